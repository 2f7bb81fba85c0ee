package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Decoding is strict and the same from every source. The file's TOML values arrive typed; an
// environment variable or flag is read as the TOML literal of the key's type would be (literal),
// so both go through strictHook and a bad value gets the same error wherever it was written.

var durationType = reflect.TypeOf(time.Duration(0))

// Forms accepted per type, quoted in errors so that each one names what to write instead.
const (
	durationForm = `a string with a unit, such as "5s", "250ms" or "1m"`
	intForm      = "a whole number without quotes, such as 4096"
	floatForm    = "a number without quotes, such as 100 or 0.5"
	boolForm     = "true or false without quotes"
	stringForm   = `a string in quotes`
	listForm     = `a list of strings, such as ["a", "b"] (in the environment: a,b)`
)

// strictHook turns mapstructure's decoding strict: no weak typing, no float truncated to an
// integer, no bare number taken as nanoseconds.
func strictHook(from, to reflect.Type, data any) (any, error) {
	if from == to {
		return data, nil
	}
	switch {
	case to == durationType:
		// The value is shown bare, so the file's 10 and "10" and the environment's 10 read the
		// same: each lacks the unit.
		s, ok := data.(string)
		if !ok {
			return nil, fmt.Errorf("%s is not a duration: write %s", bare(data), durationForm)
		}
		d, err := time.ParseDuration(s)
		// ParseDuration takes "0": a unit is always required.
		if err != nil || !strings.ContainsAny(s, "hmsuµn") {
			return nil, fmt.Errorf("%s is not a duration: write %s", bare(data), durationForm)
		}
		return d, nil
	case isInt(to.Kind()):
		if !isInt(from.Kind()) {
			return nil, fmt.Errorf("%s is not an integer: write %s", show(data), intForm)
		}
	case to.Kind() == reflect.Float64 || to.Kind() == reflect.Float32:
		if !isInt(from.Kind()) && from.Kind() != reflect.Float64 && from.Kind() != reflect.Float32 {
			return nil, fmt.Errorf("%s is not a number: write %s", show(data), floatForm)
		}
	case to.Kind() == reflect.Bool:
		return nil, fmt.Errorf("%s is not a boolean: write %s", show(data), boolForm)
	case to.Kind() == reflect.String:
		return nil, fmt.Errorf("%s is not a string: write %s", show(data), stringForm)
	case to.Kind() == reflect.Slice:
		if from.Kind() != reflect.Slice {
			return nil, fmt.Errorf("%s is not a list: write %s", show(data), listForm)
		}
	}
	return data, nil
}

func isInt(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

// bare prints a value without quotes, on one line, bounded.
func bare(v any) string {
	s := fmt.Sprintf("%v", v)
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	q := strconv.QuoteToGraphic(s) // no control byte reaches a terminal
	return q[1 : len(q)-1]
}

// show prints a value as it was written: strings quoted, numbers bare, so `5` and `"5"` read
// differently in the error, and one line whatever the value holds.
func show(v any) string {
	s := fmt.Sprintf("%v", v)
	if str, ok := v.(string); ok {
		s = strconv.Quote(str)
	}
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}

// literal reads an environment variable's or flag's text as the TOML literal of type t would be:
// strings and durations as they are (SPIP_SESSION_IDLE_TIMEOUT=5s), lists split on commas,
// numbers and booleans as TOML reads them, so "4096.9" for an integer is the float the file's
// 4096.9 is, and gets the same error. Text no literal matches stays a string and is refused by
// strictHook like a quoted value in the file.
func literal(s string, t reflect.Type) any {
	switch {
	case t == durationType || t.Kind() == reflect.String:
		return s
	case t.Kind() == reflect.Slice:
		out := []any{}
		for _, e := range strings.Split(s, ",") {
			if e = strings.TrimSpace(e); e != "" {
				out = append(out, e)
			}
		}
		return out
	}
	switch s {
	case "true":
		return true
	case "false":
		return false
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n
	}
	if strings.ContainsAny(s, ".eE") && !strings.ContainsAny(s, "xX_") {
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return f
		}
	}
	return s
}

// keyTypes maps every dotted key to its Go type.
func keyTypes(prefix string, t reflect.Type, out map[string]reflect.Type) map[string]reflect.Type {
	for i := 0; i < t.NumField(); i++ {
		key := t.Field(i).Tag.Get("mapstructure")
		if prefix != "" {
			key = prefix + "." + key
		}
		if ft := t.Field(i).Type; ft.Kind() == reflect.Struct {
			keyTypes(key, ft, out)
		} else {
			out[key] = ft
		}
	}
	return out
}

// portsAsNumbers lets capture.exclude_ports hold ports written as TOML integers ([22, 2222]):
// a port is a number, so this is the key's own form, not weak typing. Ranges stay strings.
func portsAsNumbers(v any) any {
	list, ok := v.([]any)
	if !ok {
		return v
	}
	out := make([]any, len(list))
	for i, e := range list {
		if n, ok := e.(int64); ok {
			e = strconv.FormatInt(n, 10)
		}
		out[i] = e
	}
	return out
}
