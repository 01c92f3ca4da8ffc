package main

import (
	"bytes"
	"testing"
)

func TestEncodePayload(t *testing.T) {
	const header = `{"id":"go-1/3","sent_us":1763701200990000}` + "\n"
	data, err := encodePayload("go-1/3", 1763701200990000, 256)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != 256 {
		t.Fatalf("size %d, want 256", len(data))
	}
	if !bytes.HasPrefix(data, []byte(header)) {
		t.Fatalf("header %q", data[:len(header)])
	}
	if rest := data[len(header):]; !bytes.Equal(rest, bytes.Repeat([]byte{'.'}, 256-len(header))) {
		t.Fatalf("padding %q", rest)
	}

	// Too small for the header: header and newline alone.
	data, err = encodePayload("go-1/3", 1763701200990000, 5)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != header {
		t.Fatalf("small payload %q", data)
	}

	// Exactly the header: no padding.
	data, _ = encodePayload("go-1/3", 1763701200990000, len(header))
	if string(data) != header {
		t.Fatalf("exact payload %q", data)
	}
}

func TestEncodePayloadNoHTMLEscape(t *testing.T) {
	data, _ := encodePayload("a<b>&c", 1, 0)
	if want := `{"id":"a<b>&c","sent_us":1}` + "\n"; string(data) != want {
		t.Fatalf("got %q want %q", data, want)
	}
}

func TestDecodePayload(t *testing.T) {
	data, _ := encodePayload("rust-1/0", 42, 100)
	hdr, err := decodePayload(data)
	if err != nil {
		t.Fatal(err)
	}
	if hdr.ID != "rust-1/0" || hdr.SentUs != 42 {
		t.Fatalf("decoded %+v", hdr)
	}

	for _, bad := range []string{
		"",
		`{"id":"x","sent_us":1}`, // no newline
		"not json\n....",
		`{"id":"x"}` + "\n",
		`{"sent_us":1}` + "\n",
		`{"id":1,"sent_us":1}` + "\n",
	} {
		if _, err := decodePayload([]byte(bad)); err == nil {
			t.Errorf("decodePayload(%q) succeeded", bad)
		}
	}
}
