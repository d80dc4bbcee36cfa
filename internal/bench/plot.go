package bench

import (
	"errors"
	"fmt"
	"image/color"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var (
	blue = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	grey = color.RGBA{R: 0x99, G: 0x99, B: 0x99, A: 0xff}
	red  = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
)

// WritePlot draws a run's throughput (completed and published orders per
// second) above its p99 end-to-end latency per second, as a PNG.
func WritePlot(path, title string, run *RunResult) error {
	if run == nil || len(run.Series) == 0 {
		return errors.New("bench: no time series to plot")
	}
	done, published, p99 := make(plotter.XYs, 0, len(run.Series)), make(plotter.XYs, 0, len(run.Series)), plotter.XYs{}
	for _, p := range run.Series {
		done = append(done, plotter.XY{X: p.T, Y: float64(p.Done)})
		published = append(published, plotter.XY{X: p.T, Y: float64(p.Published)})
		if p.Done > 0 {
			p99 = append(p99, plotter.XY{X: p.T, Y: p.P99})
		}
	}
	top := plot.New()
	top.Title.Text = title
	top.Y.Label.Text = "orders per second"
	top.Y.Min = 0
	top.Add(plotter.NewGrid())
	if err := addLine(top, published, grey, "published", true); err != nil {
		return err
	}
	if err := addLine(top, done, blue, "completed (all three handlers committed)", false); err != nil {
		return err
	}
	top.Legend.Top, top.Legend.Left = false, true
	top.Legend.YOffs = -2 * vg.Millimeter

	bottom := plot.New()
	bottom.X.Label.Text = "seconds since the first order was published"
	bottom.Y.Label.Text = "p99 end-to-end latency (ms)"
	bottom.Y.Min = 0
	bottom.Add(plotter.NewGrid())
	if err := addLine(bottom, p99, red, "", false); err != nil {
		return err
	}
	bottom.X.Min, bottom.X.Max = top.X.Min, top.X.Max
	return savePNG(path, [][]*plot.Plot{{top}, {bottom}})
}

func addLine(p *plot.Plot, xys plotter.XYs, c color.Color, label string, dashed bool) error {
	if len(xys) == 0 {
		return nil
	}
	l, err := plotter.NewLine(xys)
	if err != nil {
		return fmt.Errorf("bench: plot: %w", err)
	}
	l.Color, l.Width = c, vg.Points(1.5)
	if dashed {
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	}
	p.Add(l)
	if label != "" {
		p.Legend.Add(label, l)
	}
	return nil
}

func savePNG(path string, plots [][]*plot.Plot) error {
	img := vgimg.NewWith(vgimg.UseWH(22*vg.Centimeter, 15*vg.Centimeter), vgimg.UseDPI(110), vgimg.UseBackgroundColor(color.White))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadX: 4 * vg.Millimeter, PadY: 4 * vg.Millimeter,
		PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 4 * vg.Millimeter}
	canvases := plot.Align(plots, tiles, dc)
	for i, row := range plots {
		row[0].Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: plot: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		_ = f.Close() // the write failed already
		return fmt.Errorf("bench: plot: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bench: plot: %w", err)
	}
	return nil
}
