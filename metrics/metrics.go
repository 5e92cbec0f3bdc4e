package metrics

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// Labels are a sample's label names and values.
type Labels = map[string]string

// Textfile collects the gauges of one textfile.
type Textfile struct {
	reg  *prometheus.Registry
	vecs map[string]*prometheus.GaugeVec
	err  error
}

// New returns an empty textfile.
func New() *Textfile {
	return &Textfile{reg: prometheus.NewRegistry(), vecs: map[string]*prometheus.GaugeVec{}}
}

// Set sets gauge name with labels to v. The first Set of a name registers
// it with help and the label names it is given; later ones must give the
// same label names (an error Write reports).
func (t *Textfile) Set(name, help string, labels Labels, v float64) {
	vec, ok := t.vecs[name]
	if !ok {
		names := make([]string, 0, len(labels))
		for k := range labels {
			names = append(names, k)
		}
		sort.Strings(names)
		vec = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, names)
		if err := t.reg.Register(vec); err != nil {
			t.err = errors.Join(t.err, fmt.Errorf("metrics: %s: %w", name, err))
			return
		}
		t.vecs[name] = vec
	}
	g, err := vec.GetMetricWith(prometheus.Labels(labels))
	if err != nil {
		t.err = errors.Join(t.err, fmt.Errorf("metrics: %s: %w", name, err))
		return
	}
	g.Set(v)
}

// Write replaces the file at path atomically with the gauges set so far.
func (t *Textfile) Write(path string) error {
	if t.err != nil {
		return t.err
	}
	if err := prometheus.WriteToTextfile(path, t.reg); err != nil {
		return fmt.Errorf("metrics: write %s: %w", path, err)
	}
	return nil
}

// Sample is one value of a gauge read back from a textfile.
type Sample struct {
	Labels Labels
	Value  float64
}

// Read returns the samples of gauge name in the textfile at path: none
// when the file does not exist or does not hold the gauge. A file that
// does not parse is an error.
func Read(path, name string) ([]Sample, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer f.Close()
	var p expfmt.TextParser
	families, err := p.TextToMetricFamilies(f)
	if err != nil {
		return nil, fmt.Errorf("metrics: %s: %w", path, err)
	}
	mf, ok := families[name]
	if !ok {
		return nil, nil
	}
	var out []Sample
	for _, m := range mf.GetMetric() {
		s := Sample{Labels: Labels{}, Value: value(mf.GetType(), m)}
		for _, lp := range m.GetLabel() {
			s.Labels[lp.GetName()] = lp.GetValue()
		}
		out = append(out, s)
	}
	return out, nil
}

func value(t dto.MetricType, m *dto.Metric) float64 {
	switch t {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_UNTYPED:
		return m.GetUntyped().GetValue()
	}
	return m.GetGauge().GetValue()
}
