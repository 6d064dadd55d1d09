package poolset

import (
	"net/url"
	"regexp"
	"strings"
)

// Redact returns s with every secret it can recognise replaced by ***, for
// logs, errors, the tree and the admin pages. It is the one redaction
// poolset and its example use for every DSN and URL they print. It
// recognises:
//
//   - URLs (mysql://, postgres://, redis://, nats://, amqp://, ...): the
//     password becomes ***, and a user name given alone becomes *** too,
//     since NATS and others read it as a token;
//   - go-sql-driver/mysql DSNs (user:password@tcp(host:port)/db): the
//     password becomes ***, the user name stays;
//   - key=value settings, in libpq DSNs (password=x) or URL queries
//     (?password=x): the values of password, passwd, pwd, pass, token,
//     secret and sslpassword become ***.
//
// s may be a list (NATS's comma-separated servers) or a sentence that
// quotes one (a flag's parse error): each word holding an '@' is redacted
// on its own. A password that holds a space or a comma is redacted only up
// to it, so do not print such a DSN whole. Redact never fails; what it does
// not recognise it returns unchanged.
func Redact(s string) string {
	s = secretParam.ReplaceAllString(s, "${1}***")
	var b strings.Builder
	for len(s) > 0 {
		i := strings.IndexAny(s, " \t\n,")
		if i < 0 {
			i = len(s)
		}
		b.WriteString(redactWord(s[:i]))
		if i < len(s) {
			b.WriteByte(s[i])
			i++
		}
		s = s[i:]
	}
	return b.String()
}

// secretParam matches a key=value setting whose value is a secret: the
// key and '=' in group 1, then the value, quoted ('...') or up to the next
// space, '&', ';' or ','.
var secretParam = regexp.MustCompile(`(?i)\b((?:password|passwd|pwd|pass|token|secret|sslpassword)=)(?:'(?:[^'\\]|\\.)*'|[^\s&;,]*)`)

// redactWord redacts the credentials of one URL or DSN.
func redactWord(w string) string {
	at := strings.LastIndex(w, "@")
	if at < 0 {
		return w
	}
	scheme := strings.Index(w, "://")
	if scheme < 0 || scheme > at {
		// DSN form: user:password@... or user@...
		if colon := strings.Index(w[:at], ":"); colon >= 0 {
			return w[:colon+1] + "***" + w[at:]
		}
		return w
	}
	u, err := url.Parse(w)
	if err != nil || u.User == nil || u.Opaque != "" {
		// Not a URL Go can parse (a quoted word, a bad escape): keep the
		// scheme and everything from the last '@'.
		return w[:scheme+len("://")] + "***" + w[at:]
	}
	rest := w[strings.LastIndex(w, "@"):]
	if _, ok := u.User.Password(); ok {
		return w[:scheme+len("://")] + u.User.Username() + ":***" + rest
	}
	return w[:scheme+len("://")] + "***" + rest
}
