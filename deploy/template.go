// Package deploy holds the deployment: the CloudFormation templates in
// cloudformation/ are the one declaration of the system's AWS resources, and
// the files other tools read are rendered from them (go generate ./deploy):
// the ECS task definition and IAM policies in ecs/, and the SNS/SQS topology
// in topology/topology.json. Its tests check the templates against the
// worker's code and against what an AWS emulator builds from them.
package deploy

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

//go:embed cloudformation/*.yaml
var templates embed.FS

// The templates: the parent stack and its two nested stacks.
const (
	ParentTemplate   = "orderpipe.yaml"
	DataTemplate     = "data.yaml"
	PipelineTemplate = "pipeline.yaml"
)

// TemplateBody returns a template's text as shipped.
func TemplateBody(name string) ([]byte, error) {
	b, err := templates.ReadFile(path.Join("cloudformation", name))
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	return b, nil
}

// Template is a parsed CloudFormation template. Values are *Map (objects,
// keys in template order), []any, string, bool, int64 and float64; the
// short-form intrinsic functions (!Ref, !Sub, ...) are read into their long
// form ({"Ref": ...}, {"Fn::Sub": ...}).
type Template struct {
	Name       string
	Parameters *Map
	Mappings   *Map
	Conditions *Map
	Resources  *Map
	Outputs    *Map
}

// LoadTemplate parses one of the embedded templates.
func LoadTemplate(name string) (*Template, error) {
	b, err := TemplateBody(name)
	if err != nil {
		return nil, err
	}
	return ParseTemplate(name, b)
}

// ParseTemplate parses a template's YAML (or JSON) text.
func ParseTemplate(name string, text []byte) (*Template, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(text, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(doc.Content) != 1 {
		return nil, fmt.Errorf("%s: not one YAML document", name)
	}
	v, err := decode(doc.Content[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	root, ok := v.(*Map)
	if !ok {
		return nil, fmt.Errorf("%s: the template is not a mapping", name)
	}
	t := &Template{
		Name:       name,
		Parameters: root.Map("Parameters"),
		Mappings:   root.Map("Mappings"),
		Conditions: root.Map("Conditions"),
		Resources:  root.Map("Resources"),
		Outputs:    root.Map("Outputs"),
	}
	if t.Resources.Len() == 0 {
		return nil, fmt.Errorf("%s: no Resources", name)
	}
	return t, nil
}

// Resource is one resource of the template.
type Resource struct {
	Logical    string
	Type       string
	Properties *Map
	Raw        *Map
}

// Resource returns the resource with this logical id, or ok false.
func (t *Template) Resource(logical string) (Resource, bool) {
	m, ok := t.Resources.Get(logical).(*Map)
	if !ok {
		return Resource{}, false
	}
	return Resource{Logical: logical, Type: m.String("Type"), Properties: m.Map("Properties"), Raw: m}, true
}

// ResourcesOfType lists the resources of one type, in template order.
func (t *Template) ResourcesOfType(typ string) []Resource {
	var out []Resource
	for _, k := range t.Resources.Keys() {
		if r, _ := t.Resource(k); r.Type == typ {
			out = append(out, r)
		}
	}
	return out
}

// Map is a JSON object that keeps its keys in the order they were written,
// so that what is rendered from the template reads like the template.
type Map struct {
	keys []string
	vals map[string]any
}

// NewMap returns an empty Map.
func NewMap() *Map { return &Map{vals: map[string]any{}} }

// Set sets key to v, appending the key if it is new.
func (m *Map) Set(key string, v any) {
	if _, ok := m.vals[key]; !ok {
		m.keys = append(m.keys, key)
	}
	m.vals[key] = v
}

// Get returns the value of key, or nil. A nil Map has no keys.
func (m *Map) Get(key string) any {
	if m == nil {
		return nil
	}
	return m.vals[key]
}

// Has reports whether key is set.
func (m *Map) Has(key string) bool {
	if m == nil {
		return false
	}
	_, ok := m.vals[key]
	return ok
}

// Keys returns the keys in order.
func (m *Map) Keys() []string {
	if m == nil {
		return nil
	}
	return m.keys
}

// Len is the number of keys.
func (m *Map) Len() int { return len(m.Keys()) }

// Map returns the value of key if it is a Map, else nil.
func (m *Map) Map(key string) *Map { v, _ := m.Get(key).(*Map); return v }

// String returns the value of key if it is a string, else "".
func (m *Map) String(key string) string { v, _ := m.Get(key).(string); return v }

// List returns the value of key if it is a list, else nil.
func (m *Map) List(key string) []any { v, _ := m.Get(key).([]any); return v }

// MarshalJSON writes the object with its keys in order.
func (m *Map) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range m.Keys() {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		vb, err := marshal(m.vals[k])
		if err != nil {
			return nil, err
		}
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// marshal is json.Marshal without HTML escaping: "Shop <orders@...>"
// stays readable in the rendered files.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode JSON: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// Intrinsic returns the function name and argument when m is an intrinsic
// function call: one key, "Ref", "Condition" or "Fn::...".
func (m *Map) Intrinsic() (fn string, arg any, ok bool) {
	if m.Len() != 1 {
		return "", nil, false
	}
	k := m.keys[0]
	if k == "Ref" || k == "Condition" || strings.HasPrefix(k, "Fn::") {
		return k, m.vals[k], true
	}
	return "", nil, false
}

// decode turns a YAML node into template values.
func decode(n *yaml.Node) (any, error) {
	if n.Kind == yaml.AliasNode {
		return decode(n.Alias)
	}
	if fn, ok := shortForm(n.Tag); ok {
		return decodeShortForm(fn, n)
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := NewMap()
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: a mapping key that is not a scalar", k.Line)
			}
			if m.Has(k.Value) {
				return nil, fmt.Errorf("line %d: key %q twice", k.Line, k.Value)
			}
			v, err := decode(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			m.Set(k.Value, v)
		}
		return m, nil
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := decode(c)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.ScalarNode:
		return scalar(n)
	default: // a document node inside a template, or an unset kind
		return nil, fmt.Errorf("line %d: unexpected YAML node", n.Line)
	}
}

func scalar(n *yaml.Node) (any, error) {
	switch n.Tag {
	case "!!str", "":
		return n.Value, nil
	case "!!int":
		i, err := strconv.ParseInt(n.Value, 0, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		return i, nil
	case "!!float":
		f, err := strconv.ParseFloat(n.Value, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		return f, nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		return b, nil
	case "!!null":
		return nil, nil //nolint:nilnil // a YAML null is the value nil
	}
	return nil, fmt.Errorf("line %d: unsupported tag %s", n.Line, n.Tag)
}

// shortForm maps a YAML tag such as !Sub to its function, Fn::Sub.
func shortForm(tag string) (string, bool) {
	switch {
	case tag == "!Ref":
		return "Ref", true
	case tag == "!Condition":
		return "Condition", true
	case strings.HasPrefix(tag, "!") && !strings.HasPrefix(tag, "!!"):
		return "Fn::" + tag[1:], true
	}
	return "", false
}

func decodeShortForm(fn string, n *yaml.Node) (any, error) {
	var arg any
	switch n.Kind {
	case yaml.ScalarNode:
		arg = n.Value
		if fn == "Fn::GetAtt" {
			// !GetAtt Resource.Attribute; attributes may contain dots
			// (PrimaryEndPoint.Address, Outputs.Name).
			res, attr, ok := strings.Cut(n.Value, ".")
			if !ok {
				return nil, fmt.Errorf("line %d: !GetAtt %s names no attribute", n.Line, n.Value)
			}
			arg = []any{res, attr}
		}
	case yaml.SequenceNode, yaml.MappingNode:
		plain := *n
		plain.Tag = ""
		v, err := decode(&plain)
		if err != nil {
			return nil, err
		}
		arg = v
	default:
		return nil, fmt.Errorf("line %d: unexpected argument of %s", n.Line, fn)
	}
	m := NewMap()
	m.Set(fn, arg)
	return m, nil
}
