package worker_test

import (
	"errors"
	"testing"

	"github.com/poolset/poolset/shop"
	"github.com/poolset/poolset/worker"
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
	}
	for name, body := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := worker.DecodeOrder([]byte(body)); !errors.Is(err, worker.ErrInvalidMessage) {
				t.Errorf("got %v; want ErrInvalidMessage", err)
			}
		})
	}
}

func TestDecodeUser(t *testing.T) {
	u, err := worker.DecodeUser([]byte(`{"id":42,"email":"a@example.com","name":"Ada"}`))
	if err != nil || u != (shop.User{ID: 42, Email: "a@example.com", Name: "Ada"}) {
		t.Fatalf("valid user: got %+v, %v", u, err)
	}
	for _, body := range []string{`{"id":42,"email":"a@example.com"}`, `{"id":0,"email":"a@example.com","name":"A"}`, `{"id":1,"email":"nope","name":"A"}`, `{"id":1,"email":"a@b","name":" "}`, `{`} {
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
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := worker.DecodeOrder(data)
		if err != nil {
			if !errors.Is(err, worker.ErrInvalidMessage) {
				t.Fatalf("error %v does not wrap ErrInvalidMessage", err)
			}
			return
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
