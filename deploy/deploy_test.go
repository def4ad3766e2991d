// Package deploy holds the Dockerfile and Kubernetes manifests of Pontus
// (deploy/k8s), and a test that checks them offline: every YAML document
// parses, has the fields Kubernetes requires of its kind, refers only to
// ConfigMaps, Secrets and Services defined beside it, and the pontus.toml
// in the ConfigMap is a valid configuration for every role.
package deploy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"go.yaml.in/yaml/v3"

	"github.com/pontus-ci/pontus/controlplane"
	"github.com/pontus-ci/pontus/observerd"
	"github.com/pontus-ci/pontus/runnerd"
)

// object is the part of a manifest the checks read.
type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		Replicas    *int   `yaml:"replicas"`
		ServiceName string `yaml:"serviceName"`
		// Selector is a label map for a Service, {matchLabels: …} for a
		// workload.
		Selector map[string]any `yaml:"selector"`
		Ports    []struct {
			Port int `yaml:"port"`
		} `yaml:"ports"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
		} `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
}

type podSpec struct {
	SecurityContext struct {
		RunAsNonRoot bool `yaml:"runAsNonRoot"`
		RunAsUser    int  `yaml:"runAsUser"`
	} `yaml:"securityContext"`
	Containers []struct {
		Name  string   `yaml:"name"`
		Image string   `yaml:"image"`
		Args  []string `yaml:"args"`
		Env   []struct {
			Name      string `yaml:"name"`
			ValueFrom struct {
				SecretKeyRef *struct {
					Name string `yaml:"name"`
					Key  string `yaml:"key"`
				} `yaml:"secretKeyRef"`
			} `yaml:"valueFrom"`
		} `yaml:"env"`
		VolumeMounts []struct {
			Name string `yaml:"name"`
		} `yaml:"volumeMounts"`
	} `yaml:"containers"`
	Volumes []struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
		Secret *struct {
			SecretName string `yaml:"secretName"`
		} `yaml:"secret"`
	} `yaml:"volumes"`
}

var apiVersions = map[string]string{
	"ConfigMap": "v1", "Secret": "v1", "Service": "v1",
	"Deployment": "apps/v1", "StatefulSet": "apps/v1",
}

var dnsName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func load(t *testing.T) []object {
	t.Helper()
	files, err := filepath.Glob("k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/k8s: %v", err)
	}
	var objs []object
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for i := 1; ; i++ {
			var o object
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s, document %d: %v", f, i, err)
			}
			if want, ok := apiVersions[o.Kind]; !ok || o.APIVersion != want {
				t.Errorf("%s, document %d: kind %q apiVersion %q (want one of %v)", f, i, o.Kind, o.APIVersion, apiVersions)
			}
			if !dnsName.MatchString(o.Metadata.Name) {
				t.Errorf("%s, document %d: metadata.name %q is not a DNS label", f, i, o.Metadata.Name)
			}
			objs = append(objs, o)
		}
	}
	return objs
}

func TestManifests(t *testing.T) {
	objs := load(t)
	defined := map[string]object{}
	for _, o := range objs {
		key := o.Kind + "/" + o.Metadata.Name
		if _, dup := defined[key]; dup {
			t.Errorf("%s is defined twice", key)
		}
		defined[key] = o
	}
	roles := map[string]bool{}
	for _, o := range objs {
		name := o.Kind + "/" + o.Metadata.Name
		switch o.Kind {
		case "Service":
			if len(o.Spec.Ports) == 0 || !selectsPods(labels(o.Spec.Selector), objs) {
				t.Errorf("%s: needs ports and a selector that matches some workload's pods", name)
			}
		case "StatefulSet", "Deployment":
			match := labels(o.Spec.Selector["matchLabels"])
			if o.Spec.Replicas == nil || len(match) == 0 {
				t.Errorf("%s: needs replicas and spec.selector.matchLabels", name)
			}
			for k, v := range match {
				if o.Spec.Template.Metadata.Labels[k] != v {
					t.Errorf("%s: selector %s=%s does not match the pod template's labels", name, k, v)
				}
			}
			if o.Kind == "StatefulSet" {
				if s, ok := defined["Service/"+o.Spec.ServiceName]; !ok {
					t.Errorf("%s: serviceName %q is not defined", name, o.Spec.ServiceName)
				} else if s.Metadata.Name == "" {
					t.Errorf("%s: empty service", name)
				}
			}
			checkPod(t, name, o, defined)
			for _, c := range o.Spec.Template.Spec.Containers {
				if len(c.Args) > 0 {
					roles[c.Args[0]] = true
				}
			}
		}
	}
	for _, role := range []string{"controlplane", "runnerd", "observerd"} {
		if !roles[role] {
			t.Errorf("no workload runs pontus %s", role)
		}
	}
	if defined["StatefulSet/pontus-controlplane"].Spec.Replicas == nil || *defined["StatefulSet/pontus-controlplane"].Spec.Replicas < 2 {
		t.Error("the control plane should run several replicas")
	}
	checkConfig(t, defined["ConfigMap/pontus-config"].Data["pontus.toml"])
}

// labels returns a label map read from YAML (nil if v is not one).
func labels(v any) map[string]string {
	m, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	out := map[string]string{}
	for k, v := range m {
		s, ok := v.(string)
		if !ok {
			return nil
		}
		out[k] = s
	}
	return out
}

// selectsPods reports whether sel is not empty and matches the pod
// template of some workload.
func selectsPods(sel map[string]string, objs []object) bool {
	if len(sel) == 0 {
		return false
	}
next:
	for _, o := range objs {
		if o.Kind != "Deployment" && o.Kind != "StatefulSet" {
			continue
		}
		for k, v := range sel {
			if o.Spec.Template.Metadata.Labels[k] != v {
				continue next
			}
		}
		return true
	}
	return false
}

func checkPod(t *testing.T, name string, o object, defined map[string]object) {
	t.Helper()
	pod := o.Spec.Template.Spec
	if !pod.SecurityContext.RunAsNonRoot || pod.SecurityContext.RunAsUser == 0 {
		t.Errorf("%s: pods must run as a non-root user", name)
	}
	volumes := map[string]bool{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = true
		if v.ConfigMap != nil {
			if _, ok := defined["ConfigMap/"+v.ConfigMap.Name]; !ok {
				t.Errorf("%s: volume %s uses undefined ConfigMap %q", name, v.Name, v.ConfigMap.Name)
			}
		}
		if v.Secret != nil {
			if _, ok := defined["Secret/"+v.Secret.SecretName]; !ok {
				t.Errorf("%s: volume %s uses undefined Secret %q", name, v.Name, v.Secret.SecretName)
			}
		}
	}
	for _, c := range o.Spec.VolumeClaimTemplates {
		volumes[c.Metadata.Name] = true
	}
	if len(pod.Containers) == 0 {
		t.Errorf("%s: no containers", name)
	}
	for _, c := range pod.Containers {
		if c.Name == "" || c.Image == "" || len(c.Args) == 0 {
			t.Errorf("%s: container needs a name, an image and args", name)
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				t.Errorf("%s: container %s mounts undefined volume %q", name, c.Name, m.Name)
			}
		}
		for _, e := range c.Env {
			if ref := e.ValueFrom.SecretKeyRef; ref != nil {
				s, ok := defined["Secret/"+ref.Name]
				if _, hasKey := s.StringData[ref.Key]; !ok || !hasKey {
					t.Errorf("%s: env %s uses undefined secret key %s/%s", name, e.Name, ref.Name, ref.Key)
				}
			}
		}
	}
}

// checkConfig decodes the ConfigMap's pontus.toml as pontus does (unknown
// keys are errors) and validates every role.
func checkConfig(t *testing.T, doc string) {
	t.Helper()
	if doc == "" {
		t.Fatal("ConfigMap pontus-config has no pontus.toml")
	}
	cfg := struct {
		ControlPlane controlplane.Config `toml:"controlplane"`
		Runner       runnerd.Config      `toml:"runner"`
		Observer     observerd.Config    `toml:"observer"`
	}{controlplane.DefaultConfig(), runnerd.DefaultConfig(), observerd.DefaultConfig()}
	md, err := toml.Decode(doc, &cfg)
	if err != nil {
		t.Fatalf("pontus.toml in the ConfigMap: %v", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		t.Errorf("pontus.toml in the ConfigMap: unknown keys %v", und)
	}
	if err := cfg.ControlPlane.Validate(); err != nil {
		t.Errorf("[controlplane]: %v", err)
	}
	if err := cfg.Runner.Validate(); err != nil {
		t.Errorf("[runner]: %v", err)
	}
	if err := cfg.Observer.Validate(); err != nil {
		t.Errorf("[observer]: %v", err)
	}
	if n := len(cfg.Runner.ControlPlane.List()); n < 2 {
		t.Errorf("runners should be given every replica, got %d URL(s)", n)
	}
}

func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for _, want := range []string{"CGO_ENABLED=0", "USER 10001", `ENTRYPOINT ["pontus"]`} {
		if !strings.Contains(s, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}
