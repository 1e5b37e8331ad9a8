// Command mutator is the benchmark's stand-in for network-resources-injector's hot path, which
// cannot be fetched here (the Go module proxy answers 403 for it). Standard library only.
//
// For each POST /mutate it does what the injector does for a pod that asks for networks: decode
// the AdmissionReview, read the networks annotation, look each network up in a NAD table held in
// memory (the injector's informer cache), add the annotation (its "user-defined injection" of a
// labelled pod), add +1 of each NAD's resource to requests and limits of the first container,
// and answer with a base64 JSON patch.
package main

import (
	"crypto/tls"
	"encoding/json"
	"flag"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
)

const networksAnnotation = "k8s.v1.cni.cncf.io/networks"

// config is written by the Python harness: the annotation to inject for label=true pods and the
// resource name of each namespace/name NAD.
type config struct {
	Label      string            `json:"label"`
	Annotation string            `json:"annotation"`
	Resources  map[string]string `json:"resources"`
}

type admissionReview struct {
	APIVersion string             `json:"apiVersion"`
	Kind       string             `json:"kind"`
	Request    *admissionRequest  `json:"request,omitempty"`
	Response   *admissionResponse `json:"response,omitempty"`
}

type admissionRequest struct {
	UID       string          `json:"uid"`
	Namespace string          `json:"namespace"`
	Object    json.RawMessage `json:"object"`
}

type admissionResponse struct {
	UID       string  `json:"uid"`
	Allowed   bool    `json:"allowed"`
	Patch     []byte  `json:"patch,omitempty"` // encoding/json writes []byte as base64
	PatchType *string `json:"patchType,omitempty"`
	Result    *status `json:"status,omitempty"`
}

type status struct {
	Message string `json:"message"`
}

type pod struct {
	Metadata struct {
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		Containers []struct {
			Resources struct {
				Requests map[string]string `json:"requests"`
				Limits   map[string]string `json:"limits"`
			} `json:"resources"`
		} `json:"containers"`
	} `json:"spec"`
}

type selection struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
	Interface string `json:"interface,omitempty"`
}

type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

type mutator struct{ conf config }

func (m *mutator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 7<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var review admissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
		return
	}
	resp := m.mutate(review.Request)
	out, err := json.Marshal(admissionReview{APIVersion: review.APIVersion, Kind: review.Kind, Response: resp})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

func (m *mutator) mutate(req *admissionRequest) *admissionResponse {
	resp := &admissionResponse{UID: req.UID, Allowed: true}
	var p pod
	if err := json.Unmarshal(req.Object, &p); err != nil {
		resp.Result = &status{Message: err.Error()}
		return resp
	}
	var ops []patchOp
	annotation, ok := p.Metadata.Annotations[networksAnnotation]
	if p.Metadata.Labels[m.conf.Label] == "true" {
		annotation, ok = m.conf.Annotation, true
		if p.Metadata.Annotations == nil {
			ops = append(ops, patchOp{"add", "/metadata/annotations", map[string]string{networksAnnotation: annotation}})
		} else {
			ops = append(ops, patchOp{"add", "/metadata/annotations/k8s.v1.cni.cncf.io~1networks", annotation})
		}
	}
	if !ok || len(p.Spec.Containers) == 0 {
		return resp
	}
	networks, err := parseNetworks(annotation, req.Namespace)
	if err != nil {
		resp.Allowed = false
		resp.Result = &status{Message: err.Error()}
		return resp
	}
	counts := map[string]int{}
	var order []string
	for _, n := range networks {
		res, found := m.conf.Resources[n.Namespace+"/"+n.Name]
		if !found || res == "" {
			continue
		}
		if counts[res] == 0 {
			order = append(order, res)
		}
		counts[res]++
	}
	if len(order) == 0 {
		return patched(resp, ops)
	}
	c := p.Spec.Containers[0].Resources
	for _, field := range []struct {
		name string
		have map[string]string
	}{{"requests", c.Requests}, {"limits", c.Limits}} {
		values := map[string]string{}
		for k, v := range field.have {
			values[k] = v
		}
		for _, res := range order {
			values[res] = strconv.Itoa(counts[res]) // the count replaces a value the user wrote
		}
		ops = append(ops, patchOp{"add", "/spec/containers/0/resources/" + field.name, values})
	}
	return patched(resp, ops)
}

func patched(resp *admissionResponse, ops []patchOp) *admissionResponse {
	if len(ops) == 0 {
		return resp
	}
	raw, err := json.Marshal(ops)
	if err != nil {
		resp.Allowed = false
		resp.Result = &status{Message: err.Error()}
		return resp
	}
	kind := "JSONPatch"
	resp.Patch, resp.PatchType = raw, &kind
	return resp
}

// parseNetworks reads the JSON form, or the short form `ns/name@if, ...`.
func parseNetworks(value, namespace string) ([]selection, error) {
	var out []selection
	value = strings.TrimSpace(value)
	if strings.HasPrefix(value, "[") {
		if err := json.Unmarshal([]byte(value), &out); err != nil {
			return nil, err
		}
	} else {
		for _, item := range strings.Split(value, ",") {
			item = strings.TrimSpace(item)
			var s selection
			if at := strings.LastIndex(item, "@"); at >= 0 {
				item, s.Interface = item[:at], item[at+1:]
			}
			if slash := strings.Index(item, "/"); slash >= 0 {
				s.Namespace, item = item[:slash], item[slash+1:]
			}
			s.Name = item
			out = append(out, s)
		}
	}
	for i := range out {
		if out[i].Namespace == "" {
			out[i].Namespace = namespace
		}
	}
	return out, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	cert := flag.String("cert", "", "serving certificate")
	key := flag.String("key", "", "its key")
	confPath := flag.String("config", "", "JSON config written by the harness")
	flag.Parse()
	raw, err := os.ReadFile(*confPath)
	if err != nil {
		log.Fatal(err)
	}
	var conf config
	if err := json.Unmarshal(raw, &conf); err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/mutate", &mutator{conf: conf})
	server := &http.Server{
		Addr:    *addr,
		Handler: mux,
		// HTTP/2 off, as the injector has it.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	log.Fatal(server.ListenAndServeTLS(*cert, *key))
}
