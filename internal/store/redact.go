package store

import (
	"errors"
	"net/url"
	"strings"
)

// redactError replaces any copy of the database URL's password in err's
// message, for errors from libraries that may echo the connection string.
func redactError(err error, rawURL string) error {
	if err == nil {
		return nil
	}
	u, parseErr := url.Parse(rawURL)
	if parseErr != nil || u.User == nil {
		return err
	}
	password, ok := u.User.Password()
	if !ok || password == "" || !strings.Contains(err.Error(), password) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), password, "xxxxx"))
}
