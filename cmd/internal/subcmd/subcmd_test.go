package subcmd

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
)

func testProgram(ran *[]string) Program[*Base] {
	return Program[*Base]{
		Name: "orderbench", Version: "v1.2.3",
		Commands: []Command[*Base]{
			{Name: "ok", Usage: "succeeds", Run: func(_ context.Context, _ *Base, args []string) error {
				*ran = append(*ran, "ok "+strings.Join(args, " "))
				return nil
			}},
			{Name: "fail", Usage: "fails", Run: func(context.Context, *Base, []string) error { return errors.New("it broke") }},
			{Name: "helpflag", Usage: "asked for -h", Run: func(context.Context, *Base, []string) error { return flag.ErrHelp }},
		},
		New: func(b Base) *Base { return &b },
	}
}

func TestProgramRun(t *testing.T) {
	t.Setenv("DB_MAX_CONNS", "4") // a valid environment, whatever the caller's
	for _, tt := range []struct {
		name                 string
		args                 []string
		wantCode             int
		wantOut, wantErr     string // substrings; "" for none expected
		wantRan              string
		wantNoOut, wantNoErr bool
	}{
		{name: "version", args: []string{"--version"}, wantCode: 0, wantOut: "orderbench v1.2.3\nmodule:   ", wantNoErr: true},
		{name: "version, one dash", args: []string{"-version"}, wantCode: 0, wantOut: "orderbench v1.2.3\n", wantNoErr: true},
		{name: "help lists commands, --version and the variables", args: []string{"-h"}, wantCode: 2, wantErr: "  helpflag   asked for -h\n  --version  print the version", wantNoOut: true},
		{name: "no command", wantCode: 2, wantErr: "usage: orderbench COMMAND [flags]", wantNoOut: true},
		{name: "runs the command with its arguments", args: []string{"ok", "--x", "1"}, wantCode: 0, wantRan: "ok --x 1", wantNoErr: true},
		{name: "a failing command", args: []string{"fail"}, wantCode: 1, wantErr: "orderbench fail: it broke\n"},
		{name: "-h of a command: its flags were printed, nothing else", args: []string{"helpflag"}, wantCode: 1, wantNoErr: true},
		{name: "an unknown command", args: []string{"nosuch"}, wantCode: 2, wantErr: "orderbench: unknown command \"nosuch\""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var ran []string
			var out, errOut bytes.Buffer
			code := testProgram(&ran).run(tt.args, &out, &errOut)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, errOut.String())
			}
			if !strings.Contains(out.String(), tt.wantOut) || tt.wantNoOut && out.Len() > 0 {
				t.Errorf("stdout %q, want it to hold %q", out.String(), tt.wantOut)
			}
			if !strings.Contains(errOut.String(), tt.wantErr) || tt.wantNoErr && errOut.Len() > 0 {
				t.Errorf("stderr %q, want it to hold %q", errOut.String(), tt.wantErr)
			}
			if got := strings.Join(ran, ";"); got != tt.wantRan {
				t.Errorf("ran %q, want %q", got, tt.wantRan)
			}
		})
	}
}
