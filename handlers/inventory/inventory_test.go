package inventory

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/orderpipe/orderpipe/events"
)

func TestLinesMergeAndSort(t *testing.T) {
	o := events.Order{Items: []events.Item{{SKU: "B", Quantity: 1}, {SKU: "A", Quantity: 2}, {SKU: "B", Quantity: 3}}}
	want := []Line{{SKU: "A", Quantity: 2}, {SKU: "B", Quantity: 4}}
	if diff := cmp.Diff(want, Lines(o)); diff != "" {
		t.Errorf("Lines (-want +got):\n%s", diff)
	}
}

func TestShortfall(t *testing.T) {
	tests := []struct {
		name  string
		lines []Line
		stock map[events.SKU]int
		want  string
	}{
		{"enough", []Line{{"A", 2}, {"B", 1}}, map[events.SKU]int{"A": 2, "B": 5}, ""},
		{"one short", []Line{{"A", 3}, {"B", 1}}, map[events.SKU]int{"A": 2, "B": 5}, "A (want 3, have 2)"},
		{"two short", []Line{{"A", 3}, {"B", 1}}, map[events.SKU]int{"A": 0, "B": 0}, "A (want 3, have 0), B (want 1, have 0)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Shortfall(tt.lines, tt.stock); got != tt.want {
				t.Errorf("Shortfall = %q, want %q", got, tt.want)
			}
		})
	}
}
