package deploy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Metric is a CloudWatch metric an alarm or a dashboard widget of the
// stack reads.
type Metric struct {
	Namespace, Name string
	Dimensions      map[string]string // name → value; empty for none
	Stat            string
	From            string // the alarm's logical id, or the widget's title
}

// String is NAMESPACE/NAME{DIM=VALUE,...}, dimensions sorted.
func (m Metric) String() string {
	var dims []string
	for _, k := range sortedNames(m.Dimensions) {
		dims = append(dims, k+"="+m.Dimensions[k])
	}
	return fmt.Sprintf("%s/%s{%s}", m.Namespace, m.Name, strings.Join(dims, ","))
}

func sortedNames(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// AlarmMetrics returns the metrics an AWS::CloudWatch::Alarm reads: its
// metric, or each MetricStat of its metric math.
func (st *Stack) AlarmMetrics(logical string) ([]Metric, error) {
	p, err := st.Properties(logical)
	if err != nil {
		return nil, err
	}
	if p.Has("MetricName") {
		return []Metric{{p.String("Namespace"), p.String("MetricName"), dimensions(p.Get("Dimensions")), p.String("Statistic"), logical}}, nil
	}
	var out []Metric
	for _, q := range p.List("Metrics") {
		qm, _ := q.(*Map)
		stat := qm.Map("MetricStat")
		if stat == nil {
			continue // an expression
		}
		m := stat.Map("Metric")
		out = append(out, Metric{m.String("Namespace"), m.String("MetricName"), dimensions(m.Get("Dimensions")), stat.String("Stat"), logical})
	}
	if len(out) == 0 {
		return nil, st.errorf("alarm %s reads no metric", logical)
	}
	return out, nil
}

// dimensions reads a [{Name, Value}] list.
func dimensions(v any) map[string]string {
	dims := map[string]string{}
	l, _ := v.([]any)
	for _, d := range l {
		m, _ := d.(*Map)
		dims[m.String("Name")] = m.String("Value")
	}
	return dims
}

// Widget is one widget of a CloudWatch dashboard body.
type Widget struct {
	Type       string         `json:"type"`
	X          int            `json:"x"`
	Y          int            `json:"y"`
	Width      int            `json:"width"`
	Height     int            `json:"height"`
	Properties map[string]any `json:"properties"`
}

// Title is the widget's title.
func (w Widget) Title() string { s, _ := w.Properties["title"].(string); return s }

// Metrics reads a metric widget's rows, [namespace, name, dimension,
// value, ..., {options}], each with its stat (the row's, else the
// widget's). A row that is an expression alone reads no metric.
func (w Widget) Metrics() ([]Metric, error) {
	rows, _ := w.Properties["metrics"].([]any)
	defStat, _ := w.Properties["stat"].(string)
	var out []Metric
	for _, r := range rows {
		row, _ := r.([]any)
		var strs []string
		stat := defStat
		for _, c := range row {
			switch c := c.(type) {
			case string:
				strs = append(strs, c)
			case map[string]any:
				if s, ok := c["stat"].(string); ok {
					stat = s
				}
			}
		}
		if len(strs) == 0 {
			continue
		}
		if len(strs)%2 != 0 {
			return nil, fmt.Errorf("widget %q: metric row %v is not namespace, name, then dimension pairs", w.Title(), row)
		}
		m := Metric{Namespace: strs[0], Name: strs[1], Dimensions: map[string]string{}, Stat: stat, From: w.Title()}
		for i := 2; i < len(strs); i += 2 {
			m.Dimensions[strs[i]] = strs[i+1]
		}
		out = append(out, m)
	}
	return out, nil
}

// DashboardWidgets returns the widgets of an AWS::CloudWatch::Dashboard's
// evaluated body, refusing a member CloudWatch's body does not have.
func (st *Stack) DashboardWidgets(logical string) ([]Widget, error) {
	p, err := st.Properties(logical)
	if err != nil {
		return nil, err
	}
	var body struct {
		Widgets []Widget `json:"widgets"`
	}
	dec := json.NewDecoder(strings.NewReader(p.String("DashboardBody")))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		return nil, st.errorf("dashboard %s: the body is not a dashboard's JSON: %w", logical, err)
	}
	return body.Widgets, nil
}

// MonitoredMetrics returns every metric the stack's alarms and dashboards
// read.
func (st *Stack) MonitoredMetrics() ([]Metric, error) {
	var out []Metric
	for _, r := range st.T.ResourcesOfType("AWS::CloudWatch::Alarm") {
		ms, err := st.AlarmMetrics(r.Logical)
		if err != nil {
			return nil, err
		}
		out = append(out, ms...)
	}
	for _, r := range st.T.ResourcesOfType("AWS::CloudWatch::Dashboard") {
		ws, err := st.DashboardWidgets(r.Logical)
		if err != nil {
			return nil, err
		}
		for _, w := range ws {
			ms, err := w.Metrics()
			if err != nil {
				return nil, err
			}
			out = append(out, ms...)
		}
	}
	return out, nil
}
