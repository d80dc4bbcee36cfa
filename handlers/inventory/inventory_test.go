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
