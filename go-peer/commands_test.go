package main

import (
	"encoding/json"
	"testing"
)

func TestOpenStreamsArgs(t *testing.T) {
	const id = "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq"
	parse := func(line string) command {
		t.Helper()
		var cmd command
		if err := json.Unmarshal([]byte(line), &cmd); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	got, n, err := openStreamsArgs(parse(`{"cmd":"open_streams","peer":"` + id + `","count":20,"extra":1}`))
	if err != nil || got.String() != id || n != 20 {
		t.Fatalf("got %v %d %v", got, n, err)
	}
	for _, bad := range []string{
		`{"cmd":"open_streams","peer":"` + id + `"}`,
		`{"cmd":"open_streams","count":3}`,
		`{"cmd":"open_streams","peer":"` + id + `","count":-1}`,
		`{"cmd":"open_streams","peer":"not-a-peer","count":1}`,
	} {
		if _, _, err := openStreamsArgs(parse(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
	var cmd command
	if err := json.Unmarshal([]byte(`{"cmd":"open_streams","peer":"`+id+`","count":"3"}`), &cmd); err == nil {
		t.Errorf("a string count parsed")
	}
}
