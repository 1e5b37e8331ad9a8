// sriov-dp-standin advertises VF-like links to the kubelet through the real device-plugin API.
//
// STAND-IN: the node rig has no SR-IOV NICs. Each pool stands for one PF: its devices are veth
// ends already present in the node's network namespace (the "VFs", made by the rig), and their
// device IDs are the link names. The kubelet allocates them exactly as it would allocate VFs from
// the SR-IOV network device plugin; Multus then finds the allocated ID through the kubelet's
// pod-resources API and passes it to the leg plugin as `deviceID`.
//
//	sriov-dp-standin -pool intel.com/sriov_pf_a=pfa-vf0,pfa-vf1 -pool intel.com/sriov_pf_b=pfb-vf0
//
// Every device is reported Healthy; the kubelet re-registers nothing if it restarts (the rig
// starts the kubelet first and never restarts it).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

type pools map[string][]string

func (p pools) String() string { return fmt.Sprint(map[string][]string(p)) }

func (p pools) Set(value string) error {
	name, ids, ok := strings.Cut(value, "=")
	if !ok || name == "" || ids == "" {
		return fmt.Errorf("-pool %q: want RESOURCE=ID[,ID...]", value)
	}
	p[name] = strings.Split(ids, ",")
	return nil
}

// pool serves one resource: one socket, one registration.
type pool struct {
	pluginapi.UnimplementedDevicePluginServer
	resource string
	ids      []string
	socket   string
}

func (p *pool) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

func (p *pool) devices() []*pluginapi.Device {
	out := make([]*pluginapi.Device, 0, len(p.ids))
	for _, id := range p.ids {
		out = append(out, &pluginapi.Device{ID: id, Health: pluginapi.Healthy})
	}
	return out
}

// ListAndWatch sends the device list once and keeps the stream open: the rig's devices do not
// change while it runs.
func (p *pool) ListAndWatch(_ *pluginapi.Empty, stream pluginapi.DevicePlugin_ListAndWatchServer) error {
	if err := stream.Send(&pluginapi.ListAndWatchResponse{Devices: p.devices()}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

// Allocate hands the IDs back in an environment variable, as the SR-IOV device plugin does
// (PCIDEVICE_<RESOURCE>); Multus does not read it, it asks the kubelet's pod-resources API.
func (p *pool) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	env := "PCIDEVICE_" + strings.ToUpper(strings.NewReplacer(".", "_", "/", "_", "-", "_").Replace(p.resource))
	resp := &pluginapi.AllocateResponse{}
	for _, c := range req.ContainerRequests {
		log.Printf("%s: allocate %v", p.resource, c.DevicesIds)
		resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerAllocateResponse{
			Envs: map[string]string{env: strings.Join(c.DevicesIds, ",")},
		})
	}
	return resp, nil
}

func (p *pool) serve(dir string) (*grpc.Server, error) {
	_ = os.Remove(p.socket)
	lis, err := net.Listen("unix", p.socket)
	if err != nil {
		return nil, err
	}
	srv := grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(srv, p)
	go func() {
		if err := srv.Serve(lis); err != nil {
			log.Printf("%s: serve: %v", p.resource, err)
		}
	}()
	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, "kubelet.sock"),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		srv.Stop()
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version:      pluginapi.Version,
		Endpoint:     filepath.Base(p.socket),
		ResourceName: p.resource,
	})
	if err != nil {
		srv.Stop()
		return nil, fmt.Errorf("register %s with the kubelet: %w", p.resource, err)
	}
	log.Printf("%s: registered %d devices %v", p.resource, len(p.ids), p.ids)
	return srv, nil
}

func main() {
	all := pools{}
	flag.Var(all, "pool", "RESOURCE=ID[,ID...] (repeatable): one pool per PF")
	dir := flag.String("dir", pluginapi.DevicePluginPath, "the kubelet's device-plugin folder")
	flag.Parse()
	if len(all) == 0 {
		log.Fatal("no -pool given")
	}
	var servers []*grpc.Server
	i := 0
	for resource, ids := range all {
		p := &pool{resource: resource, ids: ids, socket: filepath.Join(*dir, fmt.Sprintf("sriov-standin-%d.sock", i))}
		i++
		srv, err := p.serve(*dir)
		if err != nil {
			log.Fatal(err)
		}
		servers = append(servers, srv)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	for _, s := range servers {
		s.Stop()
	}
}
