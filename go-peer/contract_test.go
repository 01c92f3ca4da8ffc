package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The contract as JSON Schemas (docs/contract/*.schema.json, generated from
// contract/src): every example line, and everything the tests give the peer
// or read from it, must pass them.

// contractDir is docs/contract/ seen from go-peer/, where go test runs. A copy
// of the sources elsewhere (images/go/build's generated modules) names it in
// MESHGATE_CONTRACT_DIR.
func contractDir() string {
	if dir := os.Getenv("MESHGATE_CONTRACT_DIR"); dir != "" {
		return dir
	}
	return filepath.Join("..", "docs", "contract")
}

// lineKind is what a contract line is; its value names the schema file.
type lineKind string

const (
	kindConfig  lineKind = "config"
	kindCommand lineKind = "commands"
	kindEvent   lineKind = "events"
	// Lines of non-peer participants (the UPnP gateway emulator): checked by
	// their schemas only, the go peer has no types for them.
	kindParticipant   lineKind = "participant-events"
	kindGatewayConfig lineKind = "gateway-config"
)

// kindOf tells a line by its tell-tale field, as contract/tests/examples.rs does.
func kindOf(fields map[string]any) (lineKind, bool) {
	for _, k := range []struct {
		field string
		kind  lineKind
	}{{"participant", kindParticipant}, {"event", kindEvent}, {"cmd", kindCommand}, {"seed", kindConfig}, {"external_ip", kindGatewayConfig}} {
		if _, ok := fields[k.field]; ok {
			return k.kind, true
		}
	}
	return "", false
}

// contractSchema is one compiled schema and its document, which unknownFields
// walks. variants are its oneOf alternatives (events, commands) compiled
// alone, for a short reason: the whole schema's names every variant's.
type contractSchema struct {
	compiled *jsonschema.Schema
	variants []*jsonschema.Schema
	doc      any
}

type contractSchemas map[lineKind]contractSchema

var loadContract = sync.OnceValues(func() (contractSchemas, error) {
	schemas := make(contractSchemas)
	for _, kind := range []lineKind{kindConfig, kindCommand, kindEvent, kindParticipant, kindGatewayConfig} {
		path, err := filepath.Abs(filepath.Join(contractDir(), string(kind)+".schema.json"))
		if err != nil {
			return nil, err
		}
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("%w (run in go-peer/, or set MESHGATE_CONTRACT_DIR)", err)
		}
		doc, err := jsonschema.UnmarshalJSON(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		c := jsonschema.NewCompiler()
		if err := c.AddResource(path, doc); err != nil {
			return nil, err
		}
		schema := contractSchema{doc: doc}
		if schema.compiled, err = c.Compile(path); err != nil {
			return nil, err
		}
		variants, _ := doc.(map[string]any)["oneOf"].([]any)
		for i := range variants {
			v, err := c.Compile(fmt.Sprintf("%s#/oneOf/%d", path, i))
			if err != nil {
				return nil, err
			}
			schema.variants = append(schema.variants, v)
		}
		schemas[kind] = schema
	}
	return schemas, nil
})

// contract is the schemas, loaded once; only on the test's goroutine.
func contract(t testing.TB) contractSchemas {
	t.Helper()
	schemas, err := loadContract()
	if err != nil {
		t.Fatalf("loading the contract schemas: %v", err)
	}
	return schemas
}

// check says why line, a line of that kind, breaks the contract: the schema's reasons,
// or fields the schema does not name. The schemas let unknown fields through
// (readers ignore them, so that the contract can grow); a line the go peer
// writes or is given must not need that.
func (s contractSchemas) check(kind lineKind, line string) error {
	value, err := jsonschema.UnmarshalJSON(strings.NewReader(line))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	schema := s[kind]
	if err := schema.compiled.Validate(value); err != nil {
		// The variant the line names (by its `event` or `cmd`) says why in short.
		variants, _ := schema.doc.(map[string]any)["oneOf"].([]any)
		fields, _ := value.(map[string]any)
		for i, v := range variants {
			props, _ := resolve(schema.doc, v)["properties"].(map[string]any)
			if props != nil && constsMatch(props, fields) {
				if verr := schema.variants[i].Validate(value); verr != nil {
					return verr
				}
			}
		}
		return err
	}
	if unknown := unknownFields(schema.doc, schema.doc, value, ""); len(unknown) > 0 {
		return fmt.Errorf("fields the %s schema does not name: %s", kind, strings.Join(unknown, ", "))
	}
	return nil
}

// checkLines checks every line of out, the peer's stdout, as an event.
func (s contractSchemas) checkLines(t *testing.T, out string) {
	t.Helper()
	for _, line := range outputLines(out) {
		if err := s.check(kindEvent, line); err != nil {
			t.Errorf("the peer wrote %q: %v", line, err)
		}
	}
}

// outputLines splits a peer's stdout into its lines, without their newlines.
// (Not strings.Lines: the sources build with Go 1.23, see images/go/build.)
func outputLines(out string) []string {
	if out == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(out, "\n"), "\n")
}

// unknownFields lists the fields of value (as paths, `gossipsub.dd`) that
// schema does not name, like contract::schema::unknown_fields: for a tagged
// line, the envelope's properties and those of the oneOf variant whose
// `const` fields match.
func unknownFields(root, schema, value any, path string) []string {
	fields, ok := value.(map[string]any)
	if !ok {
		return nil
	}
	s := resolve(root, schema)
	props, _ := s["properties"].(map[string]any)
	variants, _ := s["oneOf"].([]any)
	if props == nil && variants == nil {
		return nil // a map (`versions`): its keys are values, not fields
	}
	known := []map[string]any{props}
	for _, v := range variants {
		vprops, _ := resolve(root, v)["properties"].(map[string]any)
		if vprops != nil && constsMatch(vprops, fields) {
			known = append(known, vprops)
			break
		}
	}
	var unknown []string
	for _, name := range sortedKeys(fields) {
		full := name
		if path != "" {
			full = path + "." + name
		}
		i := slices.IndexFunc(known, func(props map[string]any) bool { _, ok := props[name]; return ok })
		if i < 0 {
			unknown = append(unknown, full)
			continue
		}
		unknown = append(unknown, unknownFields(root, known[i][name], fields[name], full)...)
	}
	return unknown
}

// constsMatch: every property of a variant that is a `const` has that value in fields.
func constsMatch(props, fields map[string]any) bool {
	for name, p := range props {
		if c, ok := p.(map[string]any)["const"]; ok && !reflect.DeepEqual(fields[name], c) {
			return false
		}
	}
	return true
}

// resolve follows a local `$ref` (`#/$defs/Offer`), also through the `anyOf`
// of an object and null that an optional field is.
func resolve(root, schema any) map[string]any {
	s, _ := schema.(map[string]any)
	if ref, ok := s["$ref"].(string); ok {
		if name, ok := strings.CutPrefix(ref, "#/$defs/"); ok {
			defs, _ := root.(map[string]any)["$defs"].(map[string]any)
			if def, ok := defs[name]; ok {
				return resolve(root, def)
			}
		}
	}
	if alts, ok := s["anyOf"].([]any); ok {
		for _, a := range alts {
			am, _ := a.(map[string]any)
			if _, ref := am["$ref"]; ref || am["properties"] != nil {
				return resolve(root, a)
			}
		}
	}
	return s
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// eventBodies are the go peer's event bodies (events.go) by event name; a
// nil constructor is an event without fields.
var eventBodies = map[string]func() any{
	"started":             func() any { return new(startedEvent) },
	"listening":           func() any { return new(listeningEvent) },
	"connection_opened":   func() any { return new(connectionOpenedEvent) },
	"connection_closed":   func() any { return new(connectionClosedEvent) },
	"identify":            func() any { return new(identifyEvent) },
	"subscribed":          func() any { return new(subscriptionEvent) },
	"unsubscribed":        func() any { return new(subscriptionEvent) },
	"mesh":                func() any { return new(meshEvent) },
	"message":             func() any { return new(messageEvent) },
	"published":           func() any { return new(publishedEvent) },
	"streams":             func() any { return new(streamsEvent) },
	"error":               func() any { return new(errorEvent) },
	"unsupported":         func() any { return new(unsupportedEvent) },
	"request_sent":        func() any { return new(requestEvent) },
	"response_received":   func() any { return new(responseReceivedEvent) },
	"request_failed":      func() any { return new(requestFailedEvent) },
	"request_received":    func() any { return new(requestEvent) },
	"reachability":        func() any { return new(reachabilityEvent) },
	"autonat_request":     func() any { return new(autonatRequestEvent) },
	"gateway_found":       func() any { return new(gatewayFoundEvent) },
	"port_mapped":         func() any { return new(portMappedEvent) },
	"port_mapping_failed": func() any { return new(portMappingFailedEvent) },
	"stopped":             nil,
}

// revision2Events are the events of the contract revision 2 roles.
var revision2Events = map[string]bool{
	"request_sent": true, "response_received": true, "request_failed": true, "request_received": true,
	"reachability": true, "autonat_request": true, "gateway_found": true, "port_mapped": true, "port_mapping_failed": true,
}

// reencode decodes line into the go peer's own type for it (Config, command,
// an event body) and encodes that again, as the peer would write it.
func reencode(kind lineKind, line string) ([]byte, error) {
	switch kind {
	case kindConfig:
		cfg, err := parseConfig(line)
		if err != nil {
			return nil, err
		}
		return json.Marshal(cfg)
	case kindCommand:
		var cmd command
		if err := json.Unmarshal([]byte(line), &cmd); err != nil {
			return nil, err
		}
		return json.Marshal(cmd)
	case kindEvent:
		var header eventHeader
		if err := json.Unmarshal([]byte(line), &header); err != nil {
			return nil, err
		}
		newBody, known := eventBodies[header.Event]
		if !known {
			return nil, fmt.Errorf("the go peer has no %q event", header.Event)
		}
		var body any
		if newBody != nil {
			body = newBody()
			if err := json.Unmarshal([]byte(line), body); err != nil {
				return nil, err
			}
		}
		return encodeEvent(header, body)
	}
	return nil, fmt.Errorf("no line kind %q", kind)
}

// roundTrip says which fields of line the go peer's types lose (unknown to
// them, spelled otherwise, or of another value once re-encoded).
func roundTrip(kind lineKind, line string) error {
	again, err := reencode(kind, line)
	if err != nil {
		return fmt.Errorf("the go peer's types do not take it: %w", err)
	}
	want, err := jsonschema.UnmarshalJSON(strings.NewReader(line))
	if err != nil {
		return err
	}
	got, err := jsonschema.UnmarshalJSON(strings.NewReader(string(again)))
	if err != nil {
		return err
	}
	if lost := lostFields(want, got, ""); len(lost) > 0 {
		return fmt.Errorf("the go peer's types lose %s (re-encoded: %s)", strings.Join(lost, ", "), again)
	}
	return nil
}

// lostFields lists what of want got lacks or holds otherwise. Fields got has
// beyond want (a zero value of a field the line left out) are fine.
func lostFields(want, got any, path string) []string {
	switch w := want.(type) {
	case map[string]any:
		g, _ := got.(map[string]any)
		var lost []string
		for _, name := range sortedKeys(w) {
			full := name
			if path != "" {
				full = path + "." + name
			}
			if gv, ok := g[name]; ok {
				lost = append(lost, lostFields(w[name], gv, full)...)
			} else {
				lost = append(lost, full)
			}
		}
		return lost
	case []any:
		g, _ := got.([]any)
		if len(g) != len(w) {
			return []string{fmt.Sprintf("%s (%v became %v)", path, want, got)}
		}
		var lost []string
		for i := range w {
			lost = append(lost, lostFields(w[i], g[i], fmt.Sprintf("%s[%d]", path, i))...)
		}
		return lost
	}
	if !reflect.DeepEqual(want, got) {
		return []string{fmt.Sprintf("%s (%v became %v)", path, want, got)}
	}
	return nil
}

// exampleLine is one line of docs/contract/examples.jsonl.
type exampleLine struct {
	n    int // 1-based line number
	kind lineKind
	text string
}

func examples(t *testing.T) []exampleLine {
	t.Helper()
	f, err := os.Open(filepath.Join(contractDir(), "examples.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []exampleLine
	scanner := bufio.NewScanner(f)
	for n := 1; scanner.Scan(); n++ {
		text := scanner.Text()
		if strings.TrimSpace(text) == "" {
			continue
		}
		var fields map[string]any
		if err := json.Unmarshal([]byte(text), &fields); err != nil {
			t.Fatalf("examples.jsonl:%d is not a JSON object: %v", n, err)
		}
		kind, ok := kindOf(fields)
		if !ok {
			t.Fatalf("examples.jsonl:%d is neither an event, a command nor a configuration", n)
		}
		lines = append(lines, exampleLine{n: n, kind: kind, text: text})
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// exampleOf is the first example event named name.
func exampleOf(t *testing.T, name string) string {
	t.Helper()
	for _, ex := range examples(t) {
		if ex.kind == kindEvent && strings.Contains(ex.text, `"event":"`+name+`"`) {
			return ex.text
		}
	}
	t.Fatalf("examples.jsonl has no %s event", name)
	return ""
}

// TestContractExamples: every example line passes its schema and survives a
// round trip through the go peer's own types, and every event the go peer
// has is exemplified (so a new event of the contract fails here until the
// go peer has it too).
func TestContractExamples(t *testing.T) {
	schemas := contract(t)
	kinds := make(map[lineKind]int)
	events := make(map[string]bool)
	for _, ex := range examples(t) {
		kinds[ex.kind]++
		if err := schemas.check(ex.kind, ex.text); err != nil {
			t.Errorf("examples.jsonl:%d: %v", ex.n, err)
		}
		if ex.kind == kindParticipant || ex.kind == kindGatewayConfig {
			continue // not the peer's lines
		}
		if err := roundTrip(ex.kind, ex.text); err != nil {
			t.Errorf("examples.jsonl:%d: %v", ex.n, err)
		}
		if ex.kind == kindEvent {
			var header eventHeader
			json.Unmarshal([]byte(ex.text), &header)
			events[header.Event] = true
		}
	}
	for _, kind := range []lineKind{kindConfig, kindCommand, kindEvent} {
		if kinds[kind] == 0 {
			t.Errorf("examples.jsonl has no %s line", kind)
		}
	}
	for name := range eventBodies {
		if !events[name] {
			t.Errorf("examples.jsonl has no %s event", name)
		}
	}
}

// TestContractDriftIsCaught: an example line that drifts from the contract
// fails, by its schema or by the round trip through the go peer's types.
func TestContractDriftIsCaught(t *testing.T) {
	schemas := contract(t)
	config := ""
	for _, ex := range examples(t) {
		if ex.kind == kindConfig && strings.Contains(ex.text, `"require":`) {
			config = ex.text
		}
	}
	for _, tc := range []struct {
		name      string
		kind      lineKind
		line      string
		old, new  string
		schema    bool // the schema check rejects it
		roundTrip bool // the round trip through the go peer's types does
	}{
		{"renamed required field", kindEvent, exampleOf(t, "connection_opened"), `"conn_id":`, `"connection_id":`, true, true},
		{"wrong type", kindEvent, exampleOf(t, "published"), `"size":256`, `"size":"256"`, true, true},
		{"unknown direction", kindEvent, exampleOf(t, "connection_closed"), `"direction":"outbound"`, `"direction":"unknown"`, true, false},
		{"renamed optional field", kindEvent, exampleOf(t, "started"), `"contract_version":`, `"contract_revision":`, true, true},
		{"unknown event", kindEvent, exampleOf(t, "stopped"), `"event":"stopped"`, `"event":"halted"`, true, true},
		{"misspelled config field", kindConfig, config, `"require":`, `"requires":`, true, true},
		{"negative count", kindCommand, `{"cmd":"open_streams","cmd_id":"c5","peer":"12D3KooWX","count":20}`, `20`, `-1`, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			drifted := strings.Replace(tc.line, tc.old, tc.new, 1)
			if drifted == tc.line {
				t.Fatalf("%s is not in %s", tc.old, tc.line)
			}
			// The line as it was passes both.
			if err := schemas.check(tc.kind, tc.line); err != nil {
				t.Fatalf("undrifted: %v", err)
			}
			if err := roundTrip(tc.kind, tc.line); err != nil {
				t.Fatalf("undrifted: %v", err)
			}
			if err := schemas.check(tc.kind, drifted); (err != nil) != tc.schema {
				t.Errorf("schema check of %s: %v, want rejected %v", drifted, err, tc.schema)
			}
			if err := roundTrip(tc.kind, drifted); (err != nil) != tc.roundTrip {
				t.Errorf("round trip of %s: %v, want rejected %v", drifted, err, tc.roundTrip)
			}
		})
	}
}
