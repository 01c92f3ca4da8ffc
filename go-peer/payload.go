package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// payloadHeader is the JSON line every published payload starts with, so any
// receiver can identify a message and compute its latency.
type payloadHeader struct {
	ID     string `json:"id"`
	SentUs int64  `json:"sent_us"`
}

// encodePayload builds `{"id":..,"sent_us":..}\n` padded with '.' up to size
// bytes; a size below the header length yields the header and newline alone.
func encodePayload(id string, sentUs int64, size int) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Other implementations do not HTML-escape; keep the header byte-identical.
	enc.SetEscapeHTML(false)
	// Encode writes the object compactly and ends it with the '\n' separator.
	if err := enc.Encode(payloadHeader{ID: id, SentUs: sentUs}); err != nil {
		return nil, err
	}
	if pad := size - buf.Len(); pad > 0 {
		buf.Write(bytes.Repeat([]byte{'.'}, pad))
	}
	return buf.Bytes(), nil
}

// decodePayload parses the header up to the first newline.
func decodePayload(data []byte) (payloadHeader, error) {
	line, _, found := bytes.Cut(data, []byte{'\n'})
	if !found {
		return payloadHeader{}, errors.New("payload has no header line")
	}
	var raw struct {
		ID     *string `json:"id"`
		SentUs *int64  `json:"sent_us"`
	}
	if err := json.Unmarshal(line, &raw); err != nil {
		return payloadHeader{}, fmt.Errorf("payload header: %w", err)
	}
	if raw.ID == nil || raw.SentUs == nil {
		return payloadHeader{}, errors.New("payload header lacks id or sent_us")
	}
	return payloadHeader{ID: *raw.ID, SentUs: *raw.SentUs}, nil
}
