package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
)

// checkKeys rejects what encoding/json would quietly accept in data, a
// JSON document meant for a value of type t: an object key that matches a
// field only when case is ignored, and a key repeated within one object
// (where encoding/json keeps the last value). Either lets a proxy in front
// of Gatehouse and Gatehouse itself read different values from one body.
// Syntax errors are left to the decoder that runs afterwards.
//
// It also rejects a document other than an object for a struct: encoding/json
// would decode null as an empty request, and give a type error for the rest.
func checkKeys(data []byte, t reflect.Type) error {
	if target := t; target != nil {
		for target.Kind() == reflect.Pointer {
			target = target.Elem()
		}
		trimmed := bytes.TrimLeft(data, " \t\r\n")
		if target.Kind() == reflect.Struct && len(trimmed) > 0 && trimmed[0] != '{' {
			return &keyError{"request body must be a JSON object"}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	err := walkValue(dec, t)
	if _, ok := err.(*keyError); ok {
		return err
	}
	if err == nil {
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return &keyError{"request body must contain a single JSON object"}
		}
	}
	return nil
}

type keyError struct{ msg string }

func (e *keyError) Error() string { return e.msg }

func walkValue(dec *json.Decoder, t reflect.Type) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	switch delim {
	case '{':
		var fields map[string]reflect.Type
		var elem reflect.Type
		if t != nil {
			switch t.Kind() {
			case reflect.Struct:
				fields = jsonFields(t)
			case reflect.Map:
				elem = t.Elem()
			}
		}
		seen := map[string]bool{}
		for dec.More() {
			keyTok, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := keyTok.(string)
			if seen[key] {
				return &keyError{fmt.Sprintf("field %q appears more than once", key)}
			}
			seen[key] = true
			next := elem
			if fields != nil {
				ft, ok := fields[key]
				if !ok {
					return &keyError{fmt.Sprintf("unknown field %q", key)}
				}
				next = ft
			}
			if err := walkValue(dec, next); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return err
	case '[':
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for dec.More() {
			if err := walkValue(dec, elem); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return err
	}
	return nil
}

// fieldsByType caches the result of jsonFields per struct type. The
// request types are few and fixed.
var fieldsByType sync.Map // reflect.Type to map[string]reflect.Type

// jsonFields maps the exact JSON names of t's fields, including those
// promoted from embedded structs, to their types. The map is shared, so
// callers must not change it.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if fields, ok := fieldsByType.Load(t); ok {
		return fields.(map[string]reflect.Type)
	}
	fields := structFields(t)
	fieldsByType.Store(t, fields)
	return fields
}

func structFields(t reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			for k, v := range jsonFields(f.Type) {
				fields[k] = v
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	return fields
}
