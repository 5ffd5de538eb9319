package parser

// Builtins returns Fluent Bit's parsers by name, as defined in its
// conf/parsers.conf (fluent/fluent-bit master, 2026): json, docker, cri,
// nginx, k8s-nginx-ingress, apache, apache2, apache_error, syslog-rfc3164,
// syslog-rfc3164-local, syslog-rfc5424, docker-daemon and logfmt. Regexes
// are copied verbatim; New translates the Onigmo-only bits (\< \> and the
// /.../ around syslog-rfc3164).
//
// Two differences follow from the Config contract rather than parsers.conf:
// apache_error has no Time_Format there (Fluent Bit keeps its time as a
// string); here its time key is tried as RFC 3339, which Apache's
// "Wed Oct 11 14:32:52 2000" is not, so it stays a string all the same.
// The nginx regex is the current one, without the trailing ?$ that made
// lines with a trailing "$http_x_forwarded_for" fail before Fluent Bit
// fixed it (fluent/fluent-bit#1273).
func Builtins() []Config {
	return []Config{
		{
			Name:       "apache",
			Format:     FormatRegex,
			Regex:      `^(?<host>[^ ]*) [^ ]* (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>[^\"]*?)(?: +\S*)?)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\"]*)" "(?<agent>[^\"]*)")?$`,
			TimeKey:    "time",
			TimeFormat: "%d/%b/%Y:%H:%M:%S %z",
		},
		{
			Name:       "apache2",
			Format:     FormatRegex,
			Regex:      `^(?<host>[^ ]*) [^ ]* (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>[^ ]*) +\S*)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\"]*)" "(?<agent>.*)")?$`,
			TimeKey:    "time",
			TimeFormat: "%d/%b/%Y:%H:%M:%S %z",
		},
		{
			Name:   "apache_error",
			Format: FormatRegex,
			Regex:  `^\[[^ ]* (?<time>[^\]]*)\] \[(?<level>[^\]]*)\](?: \[pid (?<pid>[^\]]*)\])?( \[client (?<client>[^\]]*)\])? (?<message>.*)$`,
		},
		{
			Name:       "nginx",
			Format:     FormatRegex,
			Regex:      `^(?<remote>[^ ]*) (?<host>[^ ]*) (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>[^\"]*?)(?: +\S*)?)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\"]*)" "(?<agent>[^\"]*)")`,
			TimeKey:    "time",
			TimeFormat: "%d/%b/%Y:%H:%M:%S %z",
		},
		{
			Name:       "k8s-nginx-ingress",
			Format:     FormatRegex,
			Regex:      `^(?<host>[^ ]*) - (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>[^\"]*?)(?: +\S*)?)?" (?<code>[^ ]*) (?<size>[^ ]*) "(?<referer>[^\"]*)" "(?<agent>[^\"]*)" (?<request_length>[^ ]*) (?<request_time>[^ ]*) \[(?<proxy_upstream_name>[^ ]*)\] (\[(?<proxy_alternative_upstream_name>[^ ]*)\] )?(?<upstream_addr>[^ ]*) (?<upstream_response_length>[^ ]*) (?<upstream_response_time>[^ ]*) (?<upstream_status>[^ ]*) (?<reg_id>[^ ]*).*$`,
			TimeKey:    "time",
			TimeFormat: "%d/%b/%Y:%H:%M:%S %z",
		},
		{
			Name:       "json",
			Format:     FormatJSON,
			TimeKey:    "time",
			TimeFormat: "%d/%b/%Y:%H:%M:%S %z",
		},
		{
			Name:   "logfmt",
			Format: FormatLogfmt,
		},
		{
			Name:       "docker",
			Format:     FormatJSON,
			TimeKey:    "time",
			TimeFormat: "%Y-%m-%dT%H:%M:%S.%L",
			TimeKeep:   true,
		},
		{
			Name:       "docker-daemon",
			Format:     FormatRegex,
			Regex:      `time="(?<time>[^ ]*)" level=(?<level>[^ ]*) msg="(?<msg>[^ ].*)"`,
			TimeKey:    "time",
			TimeFormat: "%Y-%m-%dT%H:%M:%S.%L",
			TimeKeep:   true,
		},
		{
			Name:       "syslog-rfc5424",
			Format:     FormatRegex,
			Regex:      `^\<(?<pri>[0-9]{1,5})\>1 (?<time>[^ ]+) (?<host>[^ ]+) (?<ident>[^ ]+) (?<pid>[-0-9]+) (?<msgid>[^ ]+) (?<extradata>(\[(.*?)\]|-)) (?<message>.+)$`,
			TimeKey:    "time",
			TimeFormat: "%Y-%m-%dT%H:%M:%S.%L%z",
			TimeKeep:   true,
		},
		{
			Name:       "syslog-rfc3164-local",
			Format:     FormatRegex,
			Regex:      `^\<(?<pri>[0-9]+)\>(?<time>[^ ]* {1,2}[^ ]* [^ ]*) (?<ident>[a-zA-Z0-9_\/\.\-]*)(?:\[(?<pid>[0-9]+)\])?(?:[^\:]*\:)? *(?<message>.*)$`,
			TimeKey:    "time",
			TimeFormat: "%b %d %H:%M:%S",
			TimeKeep:   true,
		},
		{
			Name:       "syslog-rfc3164",
			Format:     FormatRegex,
			Regex:      `/^\<(?<pri>[0-9]+)\>(?<time>[^ ]* {1,2}[^ ]* [^ ]*) (?<host>[^ ]*) (?<ident>[a-zA-Z0-9_\/\.\-]*)(?:\[(?<pid>[0-9]+)\])?(?:[^\:]*\:)? *(?<message>.*)$/`,
			TimeKey:    "time",
			TimeFormat: "%b %d %H:%M:%S",
			TimeKeep:   true,
		},
		{
			Name:       "cri",
			Format:     FormatRegex,
			Regex:      `^(?<time>[^ ]+) (?<stream>stdout|stderr) (?<logtag>[^ ]*) (?<message>.*)$`,
			TimeKey:    "time",
			TimeFormat: "%Y-%m-%dT%H:%M:%S.%L%z",
			TimeKeep:   true,
		},
	}
}
