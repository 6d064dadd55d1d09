package worker_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/poolset/poolset/examples/shop/shop"
	"github.com/poolset/poolset/examples/shop/worker"
)

func TestDecodeOrder(t *testing.T) {
	ok, err := worker.DecodeOrder([]byte(`{"id":"o-123","user_id":42,"items":[{"product_id":7,"qty":2}]}`))
	if err != nil || ok.ID != "o-123" || ok.UserID != 42 || len(ok.Items) != 1 || ok.Items[0] != (shop.Item{ProductID: 7, Qty: 2}) {
		t.Fatalf("valid order: got %+v, %v", ok, err)
	}
	bad := map[string]string{
		"malformed":        `{"id":"o-1",`,
		"not an object":    `[1,2]`,
		"trailing data":    `{"id":"o-1","user_id":1,"items":[{"product_id":1,"qty":1}]} {}`,
		"unknown field":    `{"id":"o-1","user_id":1,"items":[{"product_id":1,"qty":1}],"x":1}`,
		"missing id":       `{"user_id":1,"items":[{"product_id":1,"qty":1}]}`,
		"null id":          `{"id":null,"user_id":1,"items":[{"product_id":1,"qty":1}]}`,
		"missing user":     `{"id":"o-1","items":[{"product_id":1,"qty":1}]}`,
		"missing items":    `{"id":"o-1","user_id":1}`,
		"empty items":      `{"id":"o-1","user_id":1,"items":[]}`,
		"missing qty":      `{"id":"o-1","user_id":1,"items":[{"product_id":1}]}`,
		"missing product":  `{"id":"o-1","user_id":1,"items":[{"qty":1}]}`,
		"zero qty":         `{"id":"o-1","user_id":1,"items":[{"product_id":1,"qty":0}]}`,
		"negative qty":     `{"id":"o-1","user_id":1,"items":[{"product_id":1,"qty":-2}]}`,
		"string qty":       `{"id":"o-1","user_id":1,"items":[{"product_id":1,"qty":"2"}]}`,
		"fractional qty":   `{"id":"o-1","user_id":1,"items":[{"product_id":1,"qty":1.5}]}`,
		"negative user id": `{"id":"o-1","user_id":-1,"items":[{"product_id":1,"qty":1}]}`,
		"empty id":         `{"id":"","user_id":1,"items":[{"product_id":1,"qty":1}]}`,
		// Not valid UTF-8 (RFC 8259 section 8.1), or a lone UTF-16
		// surrogate escape: encoding/json would decode either to U+FFFD.
		"invalid byte in id":         "{\"id\":\"o-\xff\",\"user_id\":1,\"items\":[{\"product_id\":1,\"qty\":1}]}",
		"truncated sequence in id":   "{\"id\":\"o-\xe2\x82\",\"user_id\":1,\"items\":[{\"product_id\":1,\"qty\":1}]}",
		"overlong encoding in id":    "{\"id\":\"o-\xc0\xaf\",\"user_id\":1,\"items\":[{\"product_id\":1,\"qty\":1}]}",
		"encoded surrogate in id":    "{\"id\":\"o-\xed\xa0\x80\",\"user_id\":1,\"items\":[{\"product_id\":1,\"qty\":1}]}",
		"invalid byte between items": "{\"id\":\"o-1\",\"user_id\":1,\"items\":[{\"product_id\":1,\"qty\":1}]\xff}",
		"lone high surrogate escape": `{"id":"o-\ud800","user_id":1,"items":[{"product_id":1,"qty":1}]}`,
		"lone low surrogate escape":  `{"id":"o-\uDC00x","user_id":1,"items":[{"product_id":1,"qty":1}]}`,
		"reversed surrogate pair":    `{"id":"o-\udc00\ud800","user_id":1,"items":[{"product_id":1,"qty":1}]}`,
	}
	for name, body := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := worker.DecodeOrder([]byte(body)); !errors.Is(err, worker.ErrInvalidMessage) {
				t.Errorf("got %v; want ErrInvalidMessage", err)
			}
		})
	}
}

// TestDecodeOrderInvalidUTF8: bodies that differ only in their invalid
// bytes never decode to one id (which would place the first and drop the
// second as its duplicate); each is invalid, with the reason.
func TestDecodeOrderInvalidUTF8(t *testing.T) {
	body := func(id string) []byte {
		return []byte(`{"id":"` + id + `","user_id":1,"items":[{"product_id":1,"qty":1}]}`)
	}
	pairs := [][2]string{
		{"o-\xff", "o-\xfe"},
		{"o-\xc3", "o-\x80"},
		{"o-\xed\xa0\x80", "o-\xed\xbf\xbf"},
		{`o-\ud800`, `o-\udbff`},
		{`o-\udc00`, "o-\xff"},
	}
	for _, p := range pairs {
		a, errA := worker.DecodeOrder(body(p[0]))
		b, errB := worker.DecodeOrder(body(p[1]))
		if errA == nil && errB == nil && a.ID == b.ID {
			t.Errorf("%q and %q: both decode to id %q; want both invalid", p[0], p[1], a.ID)
		}
		for _, err := range []error{errA, errB} {
			if !errors.Is(err, worker.ErrInvalidMessage) {
				t.Errorf("%q, %q: got %v; want ErrInvalidMessage", p[0], p[1], err)
			}
		}
	}
	_, err := worker.DecodeOrder(body("o-\xff"))
	if err == nil || !strings.Contains(err.Error(), "not valid UTF-8") || !strings.Contains(err.Error(), "offset 9") {
		t.Errorf("reason: got %v; want one saying the body is not valid UTF-8 at offset 9", err)
	}
	// Valid Unicode in every form decodes as itself.
	valid := map[string]string{
		"é (UTF-8)":                     "o-\u00e9",
		`\u00e9`:                        "o-é",
		"surrogate pair escape":         "o-😀",
		"escaped backslash, then ud800": `o-\ud800`,
		"U+FFFD itself":                 "o-\ufffd",
	}
	raw := map[string]string{
		"é (UTF-8)":                     "o-é",
		`\u00e9`:                        `o-\u00e9`,
		"surrogate pair escape":         `o-\ud83d\ude00`,
		"escaped backslash, then ud800": `o-\\ud800`,
		"U+FFFD itself":                 "o-\xef\xbf\xbd",
	}
	for name, want := range valid {
		o, err := worker.DecodeOrder(body(raw[name]))
		if err != nil || o.ID != want {
			t.Errorf("%s: got %q, %v; want %q", name, o.ID, err, want)
		}
	}
}

func TestDecodeUser(t *testing.T) {
	u, err := worker.DecodeUser([]byte(`{"id":42,"email":"a@example.com","name":"Ada"}`))
	if err != nil || u != (shop.User{ID: 42, Email: "a@example.com", Name: "Ada"}) {
		t.Fatalf("valid user: got %+v, %v", u, err)
	}
	for _, body := range []string{`{"id":42,"email":"a@example.com"}`, `{"id":0,"email":"a@example.com","name":"A"}`, `{"id":1,"email":"nope","name":"A"}`, `{"id":1,"email":"a@b","name":" "}`, `{`,
		"{\"id\":1,\"email\":\"a@example.com\",\"name\":\"Ad\xe9\"}", `{"id":1,"email":"a@example.com","name":"Ad\udc00"}`} {
		if _, err := worker.DecodeUser([]byte(body)); !errors.Is(err, worker.ErrInvalidMessage) {
			t.Errorf("%s: got %v; want ErrInvalidMessage", body, err)
		}
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	o := shop.Order{ID: "o-9", UserID: 3, Items: []shop.Item{{ProductID: 1, Qty: 2}, {ProductID: 4, Qty: 5}}}
	got, err := worker.DecodeOrder(worker.EncodeOrder(o))
	if err != nil || got.ID != o.ID || len(got.Items) != 2 || got.Items[1] != o.Items[1] {
		t.Errorf("round trip: got %+v, %v; want %+v", got, err, o)
	}
}

// FuzzDecodeOrder checks that no input makes decoding panic, and that what
// decodes is a valid order that encodes and decodes to itself.
func FuzzDecodeOrder(f *testing.F) {
	f.Add([]byte(`{"id":"o-123","user_id":42,"items":[{"product_id":7,"qty":2}]}`))
	f.Add([]byte(`{"id":"o-1","user_id":1,"items":[{"product_id":1,"qty":-1}]}`))
	f.Add([]byte(`{"id":"` + string(make([]byte, 70)) + `"}`))
	f.Add([]byte(`null`))
	f.Add([]byte("{\"id\":\"o-\xff\",\"user_id\":1,\"items\":[{\"product_id\":1,\"qty\":1}]}"))
	f.Add([]byte(`{"id":"o-\ud800","user_id":1,"items":[{"product_id":1,"qty":1}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := worker.DecodeOrder(data)
		if err != nil {
			if !errors.Is(err, worker.ErrInvalidMessage) {
				t.Fatalf("error %v does not wrap ErrInvalidMessage", err)
			}
			return
		}
		if !utf8.Valid(data) {
			t.Fatalf("decoded %+v from a body that is not valid UTF-8", o)
		}
		// Decoding is not lossy: a U+FFFD in the id was in the body.
		if strings.ContainsRune(o.ID, utf8.RuneError) && !bytes.Contains(data, []byte("\uFFFD")) && !bytes.Contains(bytes.ToLower(data), []byte(`\ufffd`)) {
			t.Fatalf("decoded id %q with a U+FFFD that %q does not hold", o.ID, data)
		}
		if err := o.Validate(); err != nil {
			t.Fatalf("decoded an invalid order %+v: %v", o, err)
		}
		again, err := worker.DecodeOrder(worker.EncodeOrder(o))
		if err != nil || again.ID != o.ID || again.UserID != o.UserID || len(again.Items) != len(o.Items) {
			t.Fatalf("re-decode of %+v: got %+v, %v", o, again, err)
		}
	})
}

// FuzzDecodeUser checks that no input makes decoding panic.
func FuzzDecodeUser(f *testing.F) {
	f.Add([]byte(`{"id":42,"email":"a@example.com","name":"Ada"}`))
	f.Add([]byte(`{"id":"42"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := worker.DecodeUser(data); err != nil && !errors.Is(err, worker.ErrInvalidMessage) {
			t.Fatalf("error %v does not wrap ErrInvalidMessage", err)
		}
	})
}
