// vf-standin is the leg plugin of the node rig's SR-IOV networks: it gives the link that the
// kubelet allocated to the pod (Multus passes its ID as `deviceID`) to Debian's real host-device
// plugin, which moves it into the pod as CNI_IFNAME and back to the node on DEL.
//
// STAND-IN for SR-IOV CNI where the node has no VFs. The device IDs are link names (see
// sriov-dp-standin), and host-device maps a `deviceID` only to a PCI address, so this shim puts
// it into host-device's `device` field and runs host-device from CNI_PATH with the same
// environment. Everything else (the CNI protocol, the result, the errors) is host-device's.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

func fail(code int, msg string) {
	out, _ := json.Marshal(map[string]any{"cniVersion": "1.0.0", "code": code, "msg": msg})
	fmt.Println(string(out))
	os.Exit(1)
}

func main() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(5, "vf-standin: read stdin: "+err.Error())
	}
	conf := map[string]any{}
	if os.Getenv("CNI_COMMAND") != "VERSION" {
		if err := json.Unmarshal(raw, &conf); err != nil {
			fail(6, "vf-standin: network config: "+err.Error())
		}
		id, _ := conf["deviceID"].(string)
		if id == "" && os.Getenv("CNI_COMMAND") == "ADD" {
			fail(7, "vf-standin: no deviceID in the network config: is the NAD's "+
				"k8s.v1.cni.cncf.io/resourceName annotation set and the pool allocated by the kubelet?")
		}
		if id != "" {
			conf["device"] = id
		}
		delete(conf, "deviceID")
		delete(conf, "pciBusID")
		delete(conf, "type")
		conf["type"] = "host-device"
		if raw, err = json.Marshal(conf); err != nil {
			fail(5, "vf-standin: "+err.Error())
		}
	}
	var plugin string
	for _, dir := range strings.Split(os.Getenv("CNI_PATH"), string(os.PathListSeparator)) {
		if dir != "" {
			candidate := filepath.Join(dir, "host-device")
			if _, err := os.Stat(candidate); err == nil {
				plugin = candidate
				break
			}
		}
	}
	if plugin == "" {
		fail(5, "vf-standin: host-device not found in CNI_PATH "+os.Getenv("CNI_PATH"))
	}
	stdin, err := os.CreateTemp("", "vf-standin")
	if err != nil {
		fail(5, "vf-standin: "+err.Error())
	}
	os.Remove(stdin.Name())
	if _, err := stdin.Write(raw); err != nil {
		fail(5, "vf-standin: "+err.Error())
	}
	if _, err := stdin.Seek(0, 0); err != nil {
		fail(5, "vf-standin: "+err.Error())
	}
	if err := syscall.Dup2(int(stdin.Fd()), 0); err != nil {
		fail(5, "vf-standin: "+err.Error())
	}
	err = syscall.Exec(plugin, []string{plugin}, os.Environ())
	fail(5, "vf-standin: exec "+plugin+": "+err.Error())
}
