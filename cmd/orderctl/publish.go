package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"time"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/internal/seed"
)

func publish(ctx context.Context, c *cli, args []string) error {
	fs := newFlags("publish")
	sample := fs.Int("sample", 0, "publish N generated order.placed events over the seed catalog")
	file := fs.String("file", "", "publish the events in FILE, one JSON event per line ('-' or no flag: stdin)")
	raw := fs.Bool("raw", false, "publish lines as they are, unvalidated (to test dead-lettering)")
	rawType := fs.String("raw-event-type", string(events.OrderPlaced), "with --raw: the event_type attribute to set")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pub, err := c.Publisher(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	var n int
	switch {
	case *sample > 0:
		n, err = pub.Publish(ctx, seed.SampleOrders(*sample, rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1)))) //nolint:gosec // G404: sample orders, nothing secret is drawn
	case *raw:
		var lines []string
		if lines, err = readLines(*file); err == nil {
			msgs := make([]events.RawMessage, len(lines))
			for i, l := range lines {
				msgs[i] = events.RawMessage{Body: l, EventType: *rawType, SchemaVersion: events.SchemaVersion}
			}
			n, err = pub.PublishRaw(ctx, msgs)
		}
	default:
		var evs []events.Event
		if evs, err = readEvents(*file); err == nil {
			n, err = pub.Publish(ctx, evs)
		}
	}
	fmt.Fprintf(c.Out, "published %d events in %s\n", n, time.Since(start).Round(time.Millisecond))
	return err
}

func readLines(path string) ([]string, error) {
	var r io.Reader = os.Stdin
	if path != "" && path != "-" {
		f, err := os.Open(path) //nolint:gosec // G304: the operator names the file to publish (--file)
		if err != nil {
			return nil, fmt.Errorf("open events: %w", err)
		}
		defer func() { _ = f.Close() }() // read-only: a failed close loses nothing
		r = f
	}
	var lines []string
	sc := bufio.NewScanner(r)
	// Up to SNS's own limit, so that --raw can publish an oversized event
	// (to try the dead-letter path) and validation names a too-large line.
	sc.Buffer(make([]byte, 0, 64<<10), 256<<10)
	for sc.Scan() {
		if len(sc.Bytes()) > 0 {
			lines = append(lines, sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	return lines, nil
}

// readEvents reads and validates every line before anything is published:
// a file with a bad line publishes nothing, and the error names each bad line.
func readEvents(path string) ([]events.Event, error) {
	lines, err := readLines(path)
	if err != nil {
		return nil, err
	}
	evs := make([]events.Event, 0, len(lines))
	var errs []error
	for i, l := range lines {
		ev, err := events.Decode([]byte(l))
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", i+1, err))
			continue
		}
		evs = append(evs, ev)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("nothing published: %w", errors.Join(errs...))
	}
	return evs, nil
}
