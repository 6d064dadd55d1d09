package worker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/poolset/poolset/examples/shop/shop"
)

// ErrInvalidMessage is wrapped by every decoding or validation error of a
// message. Such a message goes to the dead letter at once: no redelivery
// can fix it.
var ErrInvalidMessage = errors.New("worker: invalid message")

// MaxMessageSize is the largest message body the worker decodes.
const MaxMessageSize = 64 << 10

// orderMessage is the JSON of shop.orders.placed; pointers tell a missing
// field from a zero one.
type orderMessage struct {
	ID     *string        `json:"id"`
	UserID *int64         `json:"user_id"`
	Items  *[]itemMessage `json:"items"`
}

type itemMessage struct {
	ProductID *int64 `json:"product_id"`
	Qty       *int64 `json:"qty"`
}

// DecodeOrder decodes and validates a shop.orders.placed message (see
// docs/MESSAGES.md). Errors wrap ErrInvalidMessage and say what is wrong.
func DecodeOrder(data []byte) (shop.Order, error) {
	var m orderMessage
	if err := decodeStrict(data, &m); err != nil {
		return shop.Order{}, err
	}
	switch {
	case m.ID == nil:
		return shop.Order{}, invalid("missing field id")
	case m.UserID == nil:
		return shop.Order{}, invalid("missing field user_id")
	case m.Items == nil:
		return shop.Order{}, invalid("missing field items")
	}
	o := shop.Order{ID: *m.ID, UserID: *m.UserID}
	for i, it := range *m.Items {
		if it.ProductID == nil {
			return shop.Order{}, invalid("item %d: missing field product_id", i)
		}
		if it.Qty == nil {
			return shop.Order{}, invalid("item %d: missing field qty", i)
		}
		o.Items = append(o.Items, shop.Item{ProductID: *it.ProductID, Qty: *it.Qty})
	}
	if err := o.Validate(); err != nil {
		return shop.Order{}, invalid("%s", strings.TrimPrefix(err.Error(), shop.ErrInvalidOrder.Error()+": "))
	}
	return o, nil
}

type userMessage struct {
	ID    *int64  `json:"id"`
	Email *string `json:"email"`
	Name  *string `json:"name"`
}

// DecodeUser decodes and validates a shop.users.registered message (see
// docs/MESSAGES.md). Errors wrap ErrInvalidMessage.
func DecodeUser(data []byte) (shop.User, error) {
	var m userMessage
	if err := decodeStrict(data, &m); err != nil {
		return shop.User{}, err
	}
	switch {
	case m.ID == nil:
		return shop.User{}, invalid("missing field id")
	case m.Email == nil:
		return shop.User{}, invalid("missing field email")
	case m.Name == nil:
		return shop.User{}, invalid("missing field name")
	case *m.ID <= 0:
		return shop.User{}, invalid("id must be positive")
	case len(*m.Email) < 3 || len(*m.Email) > 255 || !strings.Contains(*m.Email, "@"):
		return shop.User{}, invalid("email must have an @ and 3 to 255 bytes")
	case strings.TrimSpace(*m.Name) == "" || len(*m.Name) > 255:
		return shop.User{}, invalid("name must have 1 to 255 bytes")
	}
	return shop.User{ID: *m.ID, Email: *m.Email, Name: *m.Name}, nil
}

// decodeStrict decodes one JSON object into v, refusing unknown fields,
// trailing data, bodies over MaxMessageSize and bodies that are not valid
// UTF-8. encoding/json would replace each invalid byte with U+FFFD, so
// that two ids differing only in their invalid bytes would decode to the
// same id and the second order would be taken for a duplicate of the
// first; RFC 8259 (section 8.1) requires UTF-8, so such a body is invalid.
func decodeStrict(data []byte, v any) error {
	if len(data) > MaxMessageSize {
		return invalid("body of %d bytes over the %d-byte limit", len(data), MaxMessageSize)
	}
	if !utf8.Valid(data) {
		return invalid("not valid UTF-8 (first invalid byte at offset %d)", invalidUTF8At(data))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalid("malformed JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalid("malformed JSON: data after the object")
	}
	if at := loneSurrogateAt(data); at >= 0 {
		return invalid("string escape %s at offset %d is a lone UTF-16 surrogate, not a character", data[at:at+6], at)
	}
	return nil
}

// loneSurrogateAt returns the offset of the first \uXXXX escape in the
// well-formed JSON data that is a UTF-16 surrogate not in a pair (a high
// one, D800-DBFF, directly followed by a low one, DC00-DFFF), or -1.
// encoding/json decodes such an escape to U+FFFD, which would make two
// different ids one, as invalid UTF-8 bytes would.
func loneSurrogateAt(data []byte) int {
	in := false // inside a string
	for i := 0; i < len(data); i++ {
		switch c := data[i]; {
		case c == '"':
			in = !in
		case c != '\\' || !in:
		case data[i+1] != 'u':
			i++ // a one-character escape, such as \" or \\
		default:
			r := escapedUnit(data[i:])
			switch {
			case r >= 0xD800 && r <= 0xDBFF:
				if low := escapedUnit(data[i+6:]); low < 0xDC00 || low > 0xDFFF {
					return i
				}
				i += 11
			case r >= 0xDC00 && r <= 0xDFFF:
				return i
			default:
				i += 5
			}
		}
	}
	return -1
}

// escapedUnit returns the code unit of the \uXXXX escape that b starts
// with, or -1 when b does not start with one.
func escapedUnit(b []byte) rune {
	if len(b) < 6 || b[0] != '\\' || b[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range b[2:6] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return -1
		}
	}
	return r
}

// invalidUTF8At returns the offset of the first byte of data that does not
// start a valid UTF-8 sequence, or len(data) when there is none.
func invalidUTF8At(data []byte) int {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return len(data)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidMessage, fmt.Sprintf(format, args...))
}

// EncodeOrder returns the JSON of a shop.orders.placed message for o.
func EncodeOrder(o shop.Order) []byte {
	b, _ := json.Marshal(struct {
		ID     string      `json:"id"`
		UserID int64       `json:"user_id"`
		Items  []shop.Item `json:"items"`
	}{o.ID, o.UserID, o.Items})
	return b
}

// EncodeUser returns the JSON of a shop.users.registered message for u.
func EncodeUser(u shop.User) []byte {
	b, _ := json.Marshal(u)
	return b
}
