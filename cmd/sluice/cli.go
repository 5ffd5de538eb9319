package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/sluicelog/sluice/api"
)

// commands are the operator commands: the operator API from the command
// line.
var commands = map[string]func(c *cli, f *cmdFlags, args []string) error{
	"status": cmdStatus,
	"rewind": cmdRewind,
	"dlq":    cmdDLQ,
	"tap":    cmdTap,
	"top":    cmdTop,
}

const commandsUsage = `usage:
  sluice [-config FILE]                      run the aggregator
  sluice status                              listeners, stream, sinks and replicas
  sluice rewind SINK (--seq N | --time T)    deliver a sink again from a stream sequence or time
  sluice dlq ls SINK [--from N] [--limit N]  list a sink's dead letters
  sluice dlq show SEQ                        one dead letter, with its record
  sluice dlq replay SINK [--limit N]         write a sink's dead letters to it again
  sluice top                                 a live view, every second: listeners, stream, sinks, replicas (q quits)
  sluice tap [--stage ingest|SINK] [--match 'kube.**'] [--condition EXPR] [--limit N] [--rate R]
                                             live records, as ingest stored them or as a sink receives them

common flags: --api URL ($SLUICE_API, else http://127.0.0.1:8080), --token TOKEN
($SLUICE_API_TOKEN), --ca FILE (a CA for an https API), -o table|json
(default: table on a terminal, json otherwise)
`

// cli is one operator command's context.
type cli struct {
	out, errOut io.Writer
	client      *api.Client
	json        bool
}

// runCommand runs an operator command and returns the exit code: 0, 1 when
// the API refused or failed, 2 for bad usage.
func runCommand(name string, args []string, out, errOut io.Writer) int {
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(errOut, "sluice: unknown command %q\n%s", name, commandsUsage)
		return 2
	}
	fs := flag.NewFlagSet("sluice "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	apiURL := fs.String("api", envOr("SLUICE_API", "http://127.0.0.1:8080"), "")
	token := fs.String("token", os.Getenv("SLUICE_API_TOKEN"), "")
	ca := fs.String("ca", "", "")
	format := fs.String("o", "", "")
	c := &cli{out: out, errOut: errOut}
	f := commandFlags(name, fs)
	rest, err := parseFlags(fs, args)
	if err != nil {
		fmt.Fprintf(errOut, "sluice %s: %v\n%s", name, err, commandsUsage)
		return 2
	}
	switch *format {
	case "":
		f, isFile := out.(*os.File)
		c.json = !isFile || !term.IsTerminal(int(f.Fd()))
	case "json":
		c.json = true
	case "table":
	default:
		fmt.Fprintf(errOut, "sluice %s: -o %q: want table or json\n", name, *format)
		return 2
	}
	if c.client, err = api.NewClient(*apiURL, *token, *ca); err != nil {
		fmt.Fprintf(errOut, "sluice %s: %v\n", name, err)
		return 2
	}
	if err := cmd(c, f, rest); err != nil {
		fmt.Fprintf(errOut, "sluice %s: %v\n", name, err)
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprint(errOut, commandsUsage)
			return 2
		}
		return 1
	}
	return 0
}

// cmdFlags holds the flags of the commands.
type cmdFlags struct {
	seq       uint64
	at        string
	from      uint64
	limit     int
	stage     string
	match     stringList
	condition string
	rate      float64
}

// stringList is a flag that may be given more than once.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// commandFlags binds the flags of command name to fs.
func commandFlags(name string, fs *flag.FlagSet) *cmdFlags {
	f := &cmdFlags{}
	switch name {
	case "rewind":
		fs.Uint64Var(&f.seq, "seq", 0, "")
		fs.StringVar(&f.at, "time", "", "")
	case "dlq":
		fs.Uint64Var(&f.from, "from", 0, "")
		fs.IntVar(&f.limit, "limit", 100, "")
	case "tap":
		fs.StringVar(&f.stage, "stage", "ingest", "")
		fs.Var(&f.match, "match", "")
		fs.StringVar(&f.condition, "condition", "", "")
		fs.IntVar(&f.limit, "limit", 0, "")
		fs.Float64Var(&f.rate, "rate", 0, "")
	}
	return f
}

// parseFlags parses flags wherever they stand among the positional
// arguments (`sluice rewind file --seq 5` as well as `--seq 5 file`).
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return pos, nil
}

type usageError struct{ error }

func usage(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func (c *cli) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (c *cli) table(header string, rows [][]string) {
	tw := tabwriter.NewWriter(c.out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

func cmdStatus(c *cli, _ *cmdFlags, args []string) error {
	if len(args) != 0 {
		return usage("status takes no arguments")
	}
	ctx, cancel := c.ctx()
	defer cancel()
	st, err := c.client.Status(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(st)
	}
	s := st.Stream
	fill := ""
	if s.MaxBytes > 0 {
		fill = fmt.Sprintf(" (%.1f%% of %s)", 100*float64(s.Bytes)/float64(s.MaxBytes), bytesText(uint64(s.MaxBytes)))
	}
	seqs := "empty"
	if s.Messages > 0 {
		seqs = fmt.Sprintf("sequences %d–%d", s.FirstSeq, s.LastSeq)
	}
	fmt.Fprintf(c.out, "stream %s: %d messages, %s%s, %s, %s retention, JetStream connected: %v\n\n",
		s.Name, s.Messages, bytesText(s.Bytes), fill, seqs, s.Retention, s.Connected)
	var rows [][]string
	for _, l := range st.Listeners {
		rows = append(rows, []string{l.Name, l.Addr, strconv.Itoa(l.Connections)})
	}
	c.table("LISTENER\tADDRESS\tCONNECTIONS", rows)
	rows = nil
	for _, k := range st.Sinks {
		last := k.LastError
		if k.LastErrorAt != nil {
			last = k.LastErrorAt.Format(time.RFC3339) + " " + last
		}
		rows = append(rows, []string{k.Name, k.Type, strconv.FormatUint(k.Lag, 10), strconv.Itoa(k.AckPending),
			strconv.FormatInt(k.Delivered, 10), strconv.FormatInt(k.Retried, 10), strconv.FormatUint(k.DeadLetters, 10), last})
	}
	fmt.Fprintln(c.out)
	c.table("SINK\tTYPE\tLAG\tACK PENDING\tDELIVERED\tRETRIED\tDEAD LETTERS\tLAST ERROR", rows)
	rows = nil
	for _, r := range st.Replicas {
		id := r.ID
		if id == st.Replica {
			id += " (this)"
		}
		rows = append(rows, []string{id, strconv.Itoa(r.ForwardConnections), strconv.Itoa(r.HTTPConnections), strconv.Itoa(r.OTLPConnections),
			strconv.FormatFloat(r.RecordsPerSec, 'f', 0, 64), strconv.FormatBool(r.Draining)})
	}
	fmt.Fprintln(c.out)
	c.table("REPLICA\tFORWARD\tHTTP\tOTLP\tRECORDS/S\tDRAINING", rows)
	return nil
}

func cmdRewind(c *cli, f *cmdFlags, args []string) error {
	if len(args) != 1 {
		return usage("rewind takes one sink name")
	}
	var at time.Time
	if f.at != "" {
		var err error
		if at, err = time.Parse(time.RFC3339, f.at); err != nil {
			return usage("--time %q: want RFC 3339, e.g. 2026-12-05T07:00:00Z", f.at)
		}
	}
	if (f.seq == 0) == at.IsZero() {
		return usage("give exactly one of --seq and --time")
	}
	ctx, cancel := c.ctx()
	defer cancel()
	seq, err := c.client.Rewind(ctx, args[0], f.seq, at)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(map[string]any{"sink": args[0], "reset_seq": seq})
	}
	fmt.Fprintf(c.out, "sink %s delivers again from stream sequence %d\n", args[0], seq)
	return nil
}

func cmdDLQ(c *cli, f *cmdFlags, args []string) error {
	if len(args) != 2 {
		return usage("dlq takes ls SINK, show SEQ or replay SINK")
	}
	ctx, cancel := c.ctx()
	defer cancel()
	switch args[0] {
	case "ls":
		dls, err := c.client.DeadLetters(ctx, args[1], f.from, f.limit)
		if err != nil {
			return err
		}
		if c.json {
			return c.printJSON(dls)
		}
		var rows [][]string
		for _, d := range dls {
			rows = append(rows, []string{strconv.FormatUint(d.Seq, 10), d.Stored.Format(time.RFC3339), d.Tag,
				strconv.Itoa(d.Attempts), oneLine(d.Error, 80)})
		}
		c.table("SEQ\tSTORED\tTAG\tATTEMPTS\tERROR", rows)
		return nil
	case "show":
		seq, err := strconv.ParseUint(args[1], 10, 64)
		if err != nil {
			return usage("dlq show takes a dead-letter sequence number, not %q", args[1])
		}
		d, err := c.client.DeadLetter(ctx, seq)
		if err != nil {
			return err
		}
		return c.printJSON(d) // a record reads best as JSON, also on a terminal
	case "replay":
		n, err := c.client.Replay(ctx, args[1], f.limit)
		if err != nil {
			return err
		}
		if c.json {
			return c.printJSON(map[string]any{"sink": args[1], "replayed": n})
		}
		fmt.Fprintf(c.out, "%d dead letters of sink %s written again\n", n, args[1])
		return nil
	}
	return usage("dlq %q: want ls, show or replay", args[0])
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}

func bytesText(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// cmdTap streams live records until the limit or Ctrl-C: NDJSON for
// scripts, "time tag record" lines on a terminal.
func cmdTap(c *cli, f *cmdFlags, args []string) error {
	if len(args) != 0 {
		return usage("tap takes no arguments, only flags")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return c.client.Tap(ctx, f.stage, f.match, f.condition, f.limit, f.rate, func(line []byte) error {
		if c.json {
			_, err := fmt.Fprintf(c.out, "%s\n", line)
			return err
		}
		var rec map[string]json.RawMessage
		if json.Unmarshal(line, &rec) != nil {
			_, err := fmt.Fprintf(c.out, "%s\n", line)
			return err
		}
		var ts, tag string
		_ = json.Unmarshal(rec["@timestamp"], &ts)
		_ = json.Unmarshal(rec["tag"], &tag)
		delete(rec, "@timestamp")
		delete(rec, "tag")
		body, _ := json.Marshal(rec)
		_, err := fmt.Fprintf(c.out, "%s %s %s\n", ts, tag, body)
		return err
	})
}
