package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/sluicelog/sluice/api"
)

// topSample is one look at sluice: its status and its counters.
type topSample struct {
	at       time.Time
	status   *api.Status
	counters api.Series
	err      error
}

// topModel is `sluice top`: it samples every second and shows rates
// between the last two samples.
type topModel struct {
	c          *cli
	prev, last *topSample
}

type tickMsg time.Time

func cmdTop(c *cli, _ *cmdFlags, args []string) error {
	if len(args) != 0 {
		return usage("top takes no arguments")
	}
	m := &topModel{c: c}
	// The first sample before the screen takes over: a wrong token or an
	// unreachable API is said plainly, not drawn.
	if s := m.sample(); s.err != nil {
		return s.err
	}
	p := tea.NewProgram(m, tea.WithOutput(c.out), tea.WithInput(os.Stdin), tea.WithAltScreen())
	_, err := p.Run()
	return err
}

func (m *topModel) Init() tea.Cmd { return tick() }

func tick() tea.Cmd {
	return tea.Tick(time.Second, func(t time.Time) tea.Msg { return tickMsg(t) })
}

func (m *topModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.KeyMsg:
		switch msg.String() {
		case "q", "ctrl+c", "esc":
			return m, tea.Quit
		}
	case tickMsg:
		m.sample()
		return m, tick()
	}
	return m, nil
}

// sample takes a new sample, keeping the last one for the rates.
func (m *topModel) sample() *topSample {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s := &topSample{at: time.Now()}
	s.status, s.err = m.c.client.Status(ctx)
	if s.err == nil {
		s.counters, s.err = m.c.client.Series(ctx)
	}
	if s.err == nil {
		m.prev, m.last = m.last, s
	} else if m.last != nil {
		m.last.err = s.err
	}
	return s
}

// rate is the per-second growth of the series matching name and labels
// between the last two samples.
func (m *topModel) rate(name string, labels ...string) float64 {
	if m.prev == nil || m.last == nil {
		return 0
	}
	d := m.last.at.Sub(m.prev.at).Seconds()
	if d <= 0 {
		return 0
	}
	return (m.last.counters.Sum(name, labels...) - m.prev.counters.Sum(name, labels...)) / d
}

func (m *topModel) View() string {
	var b strings.Builder
	if m.last == nil {
		return "sampling...\n"
	}
	st := m.last.status
	fmt.Fprintf(&b, "sluice top — %s — %s — q to quit\n", m.c.client.Base(), m.last.at.Format("15:04:05"))
	if m.last.err != nil {
		fmt.Fprintf(&b, "last sample failed: %v\n", m.last.err)
	}
	s := st.Stream
	fill := 0.0
	if s.MaxBytes > 0 {
		fill = 100 * float64(s.Bytes) / float64(s.MaxBytes)
	}
	fmt.Fprintf(&b, "\nstream %s: %d messages, %s, %.1f%% full\n\n", s.Name, s.Messages, bytesText(s.Bytes), fill)
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LISTENER\tCONNECTIONS\tRECORDS/S\tBYTES/S\tREJECTED/S")
	for _, l := range st.Listeners {
		lb := `listener="` + l.Name + `"`
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%.1f\n", l.Name, l.Connections, m.rate("sluice_ingest_records_total", lb),
			bytesText(uint64(m.rate("sluice_ingest_bytes_total", lb))), m.rate("sluice_ingest_rejected_total", lb))
	}
	tw.Flush()
	b.WriteString("\n")
	tw = tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SINK\tRECORDS/S\tLAG\tACK PENDING\tRETRIES/S\tDEAD LETTERS\tLAST ERROR")
	for _, k := range st.Sinks {
		sk := `sink="` + k.Name + `"`
		fmt.Fprintf(tw, "%s\t%.0f\t%d\t%d\t%.1f\t%d\t%s\n", k.Name, m.rate("sluice_sink_records_total", sk, `outcome="delivered"`),
			k.Lag, k.AckPending, m.rate("sluice_sink_records_retried_total", sk), k.DeadLetters, oneLine(k.LastError, 60))
	}
	tw.Flush()
	if len(st.Replicas) > 0 {
		b.WriteString("\n")
		tw = tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "REPLICA\tFORWARD\tHTTP\tOTLP\tRECORDS/S\tDRAINING")
		reps := append([]api.ReplicaStatus(nil), st.Replicas...)
		sort.Slice(reps, func(i, j int) bool { return reps[i].ID < reps[j].ID })
		for _, r := range reps {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.0f\t%v\n", r.ID, r.ForwardConnections, r.HTTPConnections, r.OTLPConnections, r.RecordsPerSec, r.Draining)
		}
		tw.Flush()
	}
	return b.String()
}
