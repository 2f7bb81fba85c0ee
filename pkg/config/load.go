package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Source says where configuration comes from.
type Source struct {
	// Path is the file to read; empty means DefaultPath, where a missing file means built-in defaults.
	Path string
	// Flags holds command-line flags already parsed; each flag named in FlagKeys overrides its key.
	Flags *pflag.FlagSet
	// FlagKeys maps a flag name to the configuration key it sets.
	FlagKeys map[string]string
	// Environ is the environment to read SPIP_* variables from; nil means os.Environ().
	Environ []string
}

// Error is a configuration error: a bad file, key or value. spip exits with EX_CONFIG for it.
type Error struct{ Err error }

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Load reads, decodes and validates the configuration. Every error it returns is an *Error.
func Load(src Source) (Config, error) {
	cfg, err := load(src)
	if err != nil {
		return Config{}, &Error{err}
	}
	return cfg, nil
}

func load(src Source) (Config, error) {
	v := viper.New()
	v.SetConfigType("toml")
	def := Default()
	keys := setDefaults(v, "", reflect.ValueOf(def))

	path, explicit := src.Path, src.Path != ""
	if !explicit {
		path = DefaultPath
	}
	f, err := os.Open(path)
	switch {
	case err == nil:
		err = v.ReadConfig(f)
		f.Close()
		if err != nil {
			return Config{}, fmt.Errorf("%s: %w", path, tidyTOMLError(err))
		}
	case explicit || !errors.Is(err, fs.ErrNotExist):
		return Config{}, fmt.Errorf("config file: %w", err)
	}

	// Environment: SPIP_SECTION_KEY for every known key. Bound explicitly rather than with
	// AutomaticEnv so that unrelated SPIP_* variables can be reported as unknown.
	env := src.Environ
	if env == nil {
		env = os.Environ()
	}
	types := keyTypes("", reflect.TypeOf(def), map[string]reflect.Type{})
	known := map[string]string{}
	for _, k := range keys {
		known[EnvPrefix+"_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_"))] = k
	}
	var errs []error
	for _, kv := range env {
		name, val, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix+"_") {
			continue
		}
		k, ok := known[name]
		if !ok {
			errs = append(errs, fmt.Errorf("environment %s: not a spip setting", name))
			continue
		}
		v.Set(k, literal(val, types[k]))
	}
	if src.Flags != nil {
		for flag, key := range src.FlagKeys {
			if fl := src.Flags.Lookup(flag); fl != nil && fl.Changed {
				v.Set(key, literal(fl.Value.String(), types[key]))
			}
		}
	}
	v.Set("capture.exclude_ports", portsAsNumbers(v.Get("capture.exclude_ports")))
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}

	var cfg Config
	err = v.UnmarshalExact(&cfg, func(dc *mapstructure.DecoderConfig) {
		dc.DecodeHook = strictHook
		dc.WeaklyTypedInput = false
	})
	if err != nil {
		// Report the values that did decode but are invalid too, so one run of spip check
		// names every bad key; a key whose value did not decode is reported once, as such.
		decodeErr := tidyDecodeError(err)
		errs := []error{decodeErr}
		if verr := cfg.Validate(); verr != nil {
			for _, e := range unwrapJoined(verr) {
				key, _, _ := strings.Cut(e.Error(), ":")
				if !strings.Contains(decodeErr.Error(), key+":") && !strings.Contains(decodeErr.Error(), key+"[") {
					errs = append(errs, e)
				}
			}
		}
		return Config{}, errors.Join(errs...)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func unwrapJoined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// setDefaults registers every leaf of def with viper and returns the dotted keys.
func setDefaults(v *viper.Viper, prefix string, def reflect.Value) []string {
	var keys []string
	t := def.Type()
	for i := 0; i < t.NumField(); i++ {
		key := t.Field(i).Tag.Get("mapstructure")
		if prefix != "" {
			key = prefix + "." + key
		}
		fv := def.Field(i)
		if fv.Kind() == reflect.Struct {
			keys = append(keys, setDefaults(v, key, fv)...)
			continue
		}
		v.SetDefault(key, fv.Interface())
		keys = append(keys, key)
	}
	sort.Strings(keys)
	return keys
}

// Keys lists every configuration key, dotted, sorted.
func Keys() []string {
	return setDefaults(viper.New(), "", reflect.ValueOf(Default()))
}

var (
	unusedRe   = regexp.MustCompile(`^(?:'([a-z0-9_.]*)' )?has invalid keys: (.*)`)
	durationRe = regexp.MustCompile(`^'([a-z0-9_.]+)' time: (.*)`)
	decodeRe   = regexp.MustCompile(`^'([a-z0-9_.\[\]]+)' (.*)`)
)

// tidyDecodeError rewrites mapstructure's messages into "key: reason" lines.
func tidyDecodeError(err error) error {
	var out []error
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "*"))
		line = strings.TrimPrefix(line, "decoding failed due to the following error(s):")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if m := unusedRe.FindStringSubmatch(line); m != nil {
			for _, k := range strings.Split(m[2], ",") {
				k = strings.TrimSpace(k)
				if m[1] != "" {
					k = m[1] + "." + k
				}
				out = append(out, fmt.Errorf("%s: unknown key", k))
			}
			continue
		}
		if m := durationRe.FindStringSubmatch(line); m != nil {
			out = append(out, fmt.Errorf("%s: not a duration (use a number with a unit such as \"5s\" or \"250ms\"): %s", m[1], m[2]))
			continue
		}
		if m := decodeRe.FindStringSubmatch(line); m != nil {
			out = append(out, fmt.Errorf("%s: %s", m[1], m[2]))
			continue
		}
		out = append(out, errors.New(line))
	}
	if len(out) == 0 {
		return err
	}
	return errors.Join(out...)
}

func tidyTOMLError(err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "While parsing config: ")
	return fmt.Errorf("not valid TOML: %s", msg)
}
