package poolset

import (
	"net/url"
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
	s = redactParams(s)
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

// secretKeys are the keys whose values Redact hides in key=value settings.
var secretKeys = []string{"password", "passwd", "pwd", "pass", "token", "secret", "sslpassword"}

// redactParams replaces the value of every key=value setting whose key is
// one of secretKeys (in any case, and not the tail of a longer word) with
// ***. A value runs to the next space, '&', ';' or ',', or, when it begins
// with a quote, to the closing quote (libpq's 'a b\'c').
func redactParams(s string) string {
	var b strings.Builder
	i := 0
	for j := 0; j < len(s); j++ {
		if s[j] != '=' {
			continue
		}
		k := j
		for k > 0 && isWordByte(s[k-1]) {
			k--
		}
		if !isSecretKey(s[k:j]) {
			continue
		}
		end := j + 1
		if end < len(s) && s[end] == '\'' {
			end++
			for end < len(s) && s[end] != '\'' {
				if s[end] == '\\' {
					end++
				}
				end++
			}
			end = min(end+1, len(s))
		} else {
			for end < len(s) && !strings.ContainsRune(" \t\n&;,", rune(s[end])) {
				end++
			}
		}
		b.WriteString(s[i : j+1])
		b.WriteString("***")
		i, j = end, end-1
	}
	if i == 0 {
		return s
	}
	b.WriteString(s[i:])
	return b.String()
}

func isSecretKey(k string) bool {
	for _, sk := range secretKeys {
		if strings.EqualFold(k, sk) {
			return true
		}
	}
	return false
}

func isWordByte(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

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
