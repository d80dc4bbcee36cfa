package deploy

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// noValue is what AWS::NoValue evaluates to: the property or list element
// holding it is dropped.
type noValue struct{}

// Scope is what a template's intrinsic functions evaluate against: the
// parameters' values, the pseudo parameters, and the physical values of
// resources (what CloudFormation would return for Ref and Fn::GetAtt).
type Scope struct {
	T      *Template
	Params map[string]any // parameter → string, or []string for a list type
	Pseudo map[string]string
	// RefFunc and GetAttFunc give a resource's Ref and attribute values.
	RefFunc    func(r Resource) (any, error)
	GetAttFunc func(r Resource, attr string) (any, error)

	conditions map[string]bool
}

// NewScope evaluates the template's parameters: values given win over
// defaults; a parameter without either is an error. Lists are split on
// commas, as CloudFormation does.
func NewScope(t *Template, given map[string]string, pseudo map[string]string) (*Scope, error) {
	s := &Scope{T: t, Params: map[string]any{}, Pseudo: pseudo}
	for _, name := range t.Parameters.Keys() {
		p := t.Parameters.Map(name)
		v, ok := given[name]
		if !ok {
			if !p.Has("Default") {
				return nil, fmt.Errorf("%s: parameter %s has no value and no default", t.Name, name)
			}
			v = scalarString(p.Get("Default"))
		}
		typ := p.String("Type")
		if strings.HasPrefix(typ, "List<") || typ == "CommaDelimitedList" {
			s.Params[name] = strings.Split(v, ",")
		} else {
			s.Params[name] = v
		}
	}
	for name := range given {
		if !t.Parameters.Has(name) {
			return nil, fmt.Errorf("%s: no parameter %s", t.Name, name)
		}
	}
	return s, nil
}

// Eval evaluates every intrinsic function in v.
func (s *Scope) Eval(v any) (any, error) {
	switch v := v.(type) {
	case *Map:
		if fn, arg, ok := v.Intrinsic(); ok {
			return s.call(fn, arg)
		}
		out := NewMap()
		for _, k := range v.Keys() {
			e, err := s.Eval(v.Get(k))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			if _, drop := e.(noValue); !drop {
				out.Set(k, e)
			}
		}
		return out, nil
	case []any:
		out := make([]any, 0, len(v))
		for i, x := range v {
			e, err := s.Eval(x)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			if _, drop := e.(noValue); !drop {
				out = append(out, e)
			}
		}
		return out, nil
	}
	return v, nil
}

// EvalString evaluates v, which must come out a string.
func (s *Scope) EvalString(v any) (string, error) {
	e, err := s.Eval(v)
	if err != nil {
		return "", err
	}
	str, ok := e.(string)
	if !ok {
		return "", fmt.Errorf("%v is not a string", e)
	}
	return str, nil
}

func (s *Scope) call(fn string, arg any) (any, error) {
	switch fn {
	case "Ref":
		name, ok := arg.(string)
		if !ok {
			return nil, fmt.Errorf("Ref of %v", arg) //nolint:staticcheck // ST1005: Ref is the CloudFormation function's name
		}
		return s.ref(name)
	case "Fn::GetAtt":
		l, ok := arg.([]any)
		if !ok || len(l) != 2 {
			return nil, fmt.Errorf("Fn::GetAtt of %v", arg)
		}
		res, _ := l[0].(string)
		attr, err := s.EvalString(l[1])
		if err != nil {
			return nil, err
		}
		return s.getAtt(res, attr)
	case "Fn::Sub":
		return s.sub(arg)
	case "Fn::Join":
		return s.join(arg)
	case "Fn::Select":
		return s.selectFn(arg)
	case "Fn::Split":
		return s.split(arg)
	case "Fn::If":
		return s.ifFn(arg)
	case "Fn::FindInMap":
		return s.findInMap(arg)
	case "Condition", "Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or":
		m := NewMap()
		m.Set(fn, arg)
		return s.condition(m)
	}
	return nil, fmt.Errorf("unsupported function %s", fn)
}

// findInMap is Fn::FindInMap [map, top-level key, second-level key].
func (s *Scope) findInMap(arg any) (any, error) {
	l, ok := arg.([]any)
	if !ok || len(l) != 3 {
		return nil, fmt.Errorf("Fn::FindInMap of %v", arg)
	}
	keys := make([]string, 3)
	for i, v := range l {
		k, err := s.EvalString(v)
		if err != nil {
			return nil, fmt.Errorf("Fn::FindInMap key %d: %w", i, err)
		}
		keys[i] = k
	}
	top := s.T.Mappings.Map(keys[0]).Map(keys[1])
	if !top.Has(keys[2]) {
		return nil, fmt.Errorf("Fn::FindInMap: mapping %s has no %s.%s", keys[0], keys[1], keys[2])
	}
	return s.Eval(top.Get(keys[2]))
}

func (s *Scope) ref(name string) (any, error) {
	if v, ok := s.Params[name]; ok {
		return v, nil
	}
	if name == "AWS::NoValue" {
		return noValue{}, nil
	}
	if v, ok := s.Pseudo[name]; ok {
		return v, nil
	}
	if r, ok := s.T.Resource(name); ok {
		return s.RefFunc(r)
	}
	return nil, fmt.Errorf("Ref %s: no such parameter, pseudo parameter or resource", name) //nolint:staticcheck // ST1005: Ref is the CloudFormation function's name
}

func (s *Scope) getAtt(res, attr string) (any, error) {
	r, ok := s.T.Resource(res)
	if !ok {
		return nil, fmt.Errorf("Fn::GetAtt %s.%s: no such resource", res, attr)
	}
	return s.GetAttFunc(r, attr)
}

// subVar matches ${Name}, ${Resource.Attribute} and the literal ${!...}.
var subVar = regexp.MustCompile(`\$\{([^}]*)\}`)

func (s *Scope) sub(arg any) (any, error) {
	var text string
	vars := map[string]any{}
	switch a := arg.(type) {
	case string:
		text = a
	case []any:
		if len(a) != 2 {
			return nil, fmt.Errorf("Fn::Sub of %d arguments", len(a))
		}
		text, _ = a[0].(string)
		m, ok := a[1].(*Map)
		if !ok {
			return nil, errors.New("Fn::Sub: the second argument is not a mapping")
		}
		for _, k := range m.Keys() {
			v, err := s.Eval(m.Get(k))
			if err != nil {
				return nil, fmt.Errorf("Fn::Sub %s: %w", k, err)
			}
			vars[k] = v
		}
	default:
		return nil, fmt.Errorf("Fn::Sub of %v", arg)
	}
	var firstErr error
	out := subVar.ReplaceAllStringFunc(text, func(m string) string {
		name := m[2 : len(m)-1]
		if strings.HasPrefix(name, "!") {
			return "${" + name[1:] + "}"
		}
		var v any
		var err error
		if x, ok := vars[name]; ok {
			v = x
		} else if res, attr, dotted := strings.Cut(name, "."); dotted {
			v, err = s.getAtt(res, attr)
		} else {
			v, err = s.ref(name)
		}
		if err == nil {
			var str string
			str, err = stringOf(v)
			if err == nil {
				return str
			}
		}
		if firstErr == nil {
			firstErr = fmt.Errorf("Fn::Sub ${%s}: %w", name, err)
		}
		return m
	})
	return out, firstErr
}

func (s *Scope) join(arg any) (any, error) {
	a, ok := arg.([]any)
	if !ok || len(a) != 2 {
		return nil, fmt.Errorf("Fn::Join of %v", arg)
	}
	sep, _ := a[0].(string)
	l, err := s.Eval(a[1])
	if err != nil {
		return nil, err
	}
	parts, err := stringList(l)
	if err != nil {
		return nil, fmt.Errorf("Fn::Join: %w", err)
	}
	return strings.Join(parts, sep), nil
}

func (s *Scope) selectFn(arg any) (any, error) {
	a, ok := arg.([]any)
	if !ok || len(a) != 2 {
		return nil, fmt.Errorf("Fn::Select of %v", arg)
	}
	i, err := strconv.Atoi(scalarString(a[0]))
	if err != nil {
		return nil, fmt.Errorf("Fn::Select index %v", a[0])
	}
	l, err := s.Eval(a[1])
	if err != nil {
		return nil, err
	}
	items, err := stringList(l)
	if err != nil {
		return nil, fmt.Errorf("Fn::Select: %w", err)
	}
	if i < 0 || i >= len(items) {
		return nil, fmt.Errorf("Fn::Select index %d of %d items", i, len(items))
	}
	return items[i], nil
}

func (s *Scope) split(arg any) (any, error) {
	a, ok := arg.([]any)
	if !ok || len(a) != 2 {
		return nil, fmt.Errorf("Fn::Split of %v", arg)
	}
	sep, _ := a[0].(string)
	str, err := s.EvalString(a[1])
	if err != nil {
		return nil, err
	}
	var out []any
	for p := range strings.SplitSeq(str, sep) {
		out = append(out, p)
	}
	return out, nil
}

func (s *Scope) ifFn(arg any) (any, error) {
	a, ok := arg.([]any)
	if !ok || len(a) != 3 {
		return nil, fmt.Errorf("Fn::If of %v", arg)
	}
	name, _ := a[0].(string)
	c, err := s.Condition(name)
	if err != nil {
		return nil, err
	}
	if c {
		return s.Eval(a[1])
	}
	return s.Eval(a[2])
}

// Condition evaluates one of the template's named conditions.
func (s *Scope) Condition(name string) (bool, error) {
	if v, ok := s.conditions[name]; ok {
		return v, nil
	}
	if !s.T.Conditions.Has(name) {
		return false, fmt.Errorf("no condition %s", name)
	}
	v, err := s.condition(s.T.Conditions.Get(name))
	if err != nil {
		return false, fmt.Errorf("condition %s: %w", name, err)
	}
	if s.conditions == nil {
		s.conditions = map[string]bool{}
	}
	s.conditions[name] = v
	return v, nil
}

func (s *Scope) condition(v any) (bool, error) {
	m, ok := v.(*Map)
	if !ok {
		return false, fmt.Errorf("condition %v is not a function", v)
	}
	fn, arg, _ := m.Intrinsic()
	if fn == "Condition" {
		name, _ := arg.(string)
		return s.Condition(name)
	}
	args, ok := arg.([]any)
	if !ok {
		return false, fmt.Errorf("%s of %v", fn, arg)
	}
	switch fn {
	case "Fn::Equals":
		if len(args) != 2 {
			return false, errors.New("Fn::Equals needs two values")
		}
		a, err := s.Eval(args[0])
		if err != nil {
			return false, err
		}
		b, err := s.Eval(args[1])
		if err != nil {
			return false, err
		}
		return scalarString(a) == scalarString(b), nil
	case "Fn::Not":
		if len(args) != 1 {
			return false, errors.New("Fn::Not needs one condition")
		}
		c, err := s.condition(args[0])
		return !c, err
	case "Fn::And", "Fn::Or":
		and := fn == "Fn::And"
		for _, a := range args {
			c, err := s.condition(a)
			if err != nil {
				return false, err
			}
			if c != and {
				return c, nil
			}
		}
		return and, nil
	}
	return false, fmt.Errorf("unsupported condition function %s", fn)
}

func stringOf(v any) (string, error) {
	switch v.(type) {
	case string, int64, float64, bool:
		return scalarString(v), nil
	}
	return "", fmt.Errorf("%v is not a scalar", v)
}

func stringList(v any) ([]string, error) {
	switch l := v.(type) {
	case []string:
		return l, nil
	case []any:
		out := make([]string, len(l))
		for i, x := range l {
			s, err := stringOf(x)
			if err != nil {
				return nil, err
			}
			out[i] = s
		}
		return out, nil
	}
	return nil, fmt.Errorf("%v is not a list", v)
}

// scalarString formats a scalar as CloudFormation passes it on: numbers
// and booleans as their text.
func scalarString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}
