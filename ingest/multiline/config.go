package multiline

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/sluicelog/sluice/internal/units"
)

// Config configures multiline joining on a Forward connection. It is off
// while Parser is empty and no regular expression or rule is set.
type Config struct {
	// Parser is a built-in parser: docker or cri (partial lines), java,
	// python or go (stack traces and panics). Leave it empty for concat's
	// regular expressions (Start, End, Continuous) or for Rules.
	Parser string `yaml:"parser"`
	// Key is the field holding the line; default log.
	Key string `yaml:"key"`
	// StreamKeys are the fields that, with the tag, keep streams apart
	// (their lines are never joined together); default [stream].
	StreamKeys []string `yaml:"stream_keys"`
	// Start, End and Continuous are Fluentd concat's
	// multiline_start_regexp, multiline_end_regexp and
	// continuous_line_regexp.
	Start      string `yaml:"start"`
	End        string `yaml:"end"`
	Continuous string `yaml:"continuous"`
	// Rules are a custom parser written as Fluent Bit writes one: a line
	// matching a rule of start_state begins a group; while a group is in a
	// state, a line matching one of that state's rules joins it and moves it
	// to the rule's next state; any other line ends the group.
	Rules []Rule `yaml:"rules"`
	// Separator goes between joined lines (after a trailing newline of each
	// is taken off); default "\n". Partial lines (docker, cri) are joined
	// with nothing between them.
	Separator *string `yaml:"separator"`
	// FlushInterval stores a group that is still open this long after its
	// first line as it is; default 5s.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// MaxLines and MaxBytes bound one group; a group that reaches either is
	// stored as it is. Defaults 1000 and 512KiB.
	MaxLines int            `yaml:"max_lines"`
	MaxBytes units.ByteSize `yaml:"max_bytes"`
	// MaxOpenBytes bounds the open groups of one connection; above it the
	// oldest is stored as it is. Default 4MiB.
	MaxOpenBytes units.ByteSize `yaml:"max_open_bytes"`
}

// Rule is one rule of a custom parser.
type Rule struct {
	State string `yaml:"state"`
	Regex string `yaml:"regex"`
	Next  string `yaml:"next"`
}

// Enabled reports whether joining is configured.
func (c *Config) Enabled() bool {
	return c.Parser != "" || c.Start != "" || c.End != "" || c.Continuous != "" || len(c.Rules) > 0
}

// SetDefaults fills zero values.
func (c *Config) SetDefaults() {
	if c.Key == "" {
		c.Key = "log"
	}
	if c.StreamKeys == nil {
		c.StreamKeys = []string{"stream"}
	}
	if c.Separator == nil {
		nl := "\n"
		c.Separator = &nl
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = 5 * time.Second
	}
	if c.MaxLines == 0 {
		c.MaxLines = 1000
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 512 << 10
	}
	if c.MaxOpenBytes == 0 {
		c.MaxOpenBytes = 4 << 20
	}
}

// Validate checks the configuration; error texts start with the field name.
func (c *Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	_, err := compile(c)
	return err
}

func compile(c *Config) (*machine, error) {
	kinds := 0
	for _, on := range []bool{c.Parser != "", c.Start != "" || c.End != "" || c.Continuous != "", len(c.Rules) > 0} {
		if on {
			kinds++
		}
	}
	if kinds > 1 {
		return nil, errors.New("parser: set one of parser, the concat regular expressions (start, end, continuous) or rules")
	}
	switch {
	case c.FlushInterval <= 0:
		return nil, errors.New("flush_interval: must be positive")
	case c.MaxLines < 2:
		return nil, errors.New("max_lines: must be at least 2")
	case c.MaxBytes < 1<<10:
		return nil, errors.New("max_bytes: must be at least 1KiB")
	case c.MaxOpenBytes < c.MaxBytes:
		return nil, errors.New("max_open_bytes: must be at least max_bytes")
	}
	if c.Parser != "" {
		m, ok := builtins[c.Parser]
		if !ok {
			return nil, fmt.Errorf("parser: %q is not one of docker, cri, java, python, go", c.Parser)
		}
		return m(), nil
	}
	if len(c.Rules) > 0 {
		return rulesMachine(c.Rules)
	}
	m := &machine{kind: kindConcat}
	var err error
	for _, r := range []struct {
		field string
		src   string
		dst   **regexp.Regexp
	}{{"start", c.Start, &m.start}, {"end", c.End, &m.end}, {"continuous", c.Continuous, &m.continuous}} {
		if r.src == "" {
			continue
		}
		if *r.dst, err = regexp.Compile(r.src); err != nil {
			return nil, fmt.Errorf("%s: %w", r.field, err)
		}
	}
	return m, nil
}
