// Command runcwrap runs runc with a container spec this host can honour.
//
// Some sandboxes drop CAP_SYS_RESOURCE from every process's bounding set. runc
// then fails to start any container that asks for that capability ("unable to
// apply caps: operation not permitted"), which is every privileged container,
// kind's nodes included; and it fails to lower oom_score_adj, which kubelets ask
// for pods ("can't get final child's PID from pipe: EOF"). This wrapper edits
// the OCI spec runc is about to read: it drops the capability where it is asked
// for and raises a negative oomScoreAdj to what this process may set. Where the
// capability is present it changes nothing and only execs runc.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

const capSysResource = 24

// realRuncCandidates are tried in order; $RUNCWRAP_RUNC overrides them.
var realRuncCandidates = []string{"/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc.real"}

func main() {
	runc := findRunc()
	if !hasCapSysResource() {
		if err := fixSpecs(os.Args[1:]); err != nil {
			fmt.Fprintf(os.Stderr, "runcwrap: %v\n", err)
			os.Exit(1)
		}
	}
	argv := append([]string{runc}, os.Args[1:]...)
	if err := syscall.Exec(runc, argv, os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "runcwrap: exec %s: %v\n", runc, err)
		os.Exit(127)
	}
}

func findRunc() string {
	if explicit := os.Getenv("RUNCWRAP_RUNC"); explicit != "" {
		return explicit
	}
	self, _ := os.Executable()
	for _, candidate := range realRuncCandidates {
		if info, err := os.Stat(candidate); err == nil && !info.IsDir() {
			if resolved, _ := filepath.EvalSymlinks(candidate); resolved != self {
				return candidate
			}
		}
	}
	fmt.Fprintln(os.Stderr, "runcwrap: no runc found in", strings.Join(realRuncCandidates, ", "))
	os.Exit(127)
	return ""
}

// hasCapSysResource reads the bounding set: a capability missing there can never be had.
func hasCapSysResource() bool {
	file, err := os.Open("/proc/self/status")
	if err != nil {
		return true
	}
	defer file.Close()
	scanner := bufio.NewScanner(file)
	for scanner.Scan() {
		line := scanner.Text()
		if strings.HasPrefix(line, "CapBnd:") {
			mask, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(line, "CapBnd:")), 16, 64)
			return err != nil || mask&(1<<capSysResource) != 0
		}
	}
	return true
}

// fixSpecs edits the bundle's config.json (create, run) or the process file (exec).
func fixSpecs(args []string) error {
	bundle, process := "", ""
	for i := 0; i < len(args); i++ {
		arg := args[i]
		for _, flag := range []string{"--bundle", "-b", "--process", "-p"} {
			value := ""
			if arg == flag && i+1 < len(args) {
				value = args[i+1]
			} else if strings.HasPrefix(arg, flag+"=") {
				value = strings.TrimPrefix(arg, flag+"=")
			}
			if value == "" {
				continue
			}
			if flag == "--bundle" || flag == "-b" {
				bundle = value
			} else {
				process = value
			}
		}
	}
	if bundle != "" {
		if err := editJSON(filepath.Join(bundle, "config.json"), func(doc map[string]any) {
			if proc, ok := doc["process"].(map[string]any); ok {
				fixProcess(proc)
			}
		}); err != nil {
			return err
		}
	}
	if process != "" {
		return editJSON(process, fixProcess)
	}
	return nil
}

func fixProcess(proc map[string]any) {
	if caps, ok := proc["capabilities"].(map[string]any); ok {
		for key, list := range caps {
			items, ok := list.([]any)
			if !ok {
				continue
			}
			kept := make([]any, 0, len(items))
			for _, item := range items {
				if item != "CAP_SYS_RESOURCE" {
					kept = append(kept, item)
				}
			}
			caps[key] = kept
		}
	}
	if value, ok := proc["oomScoreAdj"].(json.Number); ok {
		wanted, err := value.Int64()
		own := ownOOMScoreAdj()
		if err == nil && wanted < own {
			proc["oomScoreAdj"] = json.Number(strconv.FormatInt(own, 10))
		}
	}
}

func ownOOMScoreAdj() int64 {
	data, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0
	}
	value, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0
	}
	return value
}

// editJSON rewrites a JSON file in place, keeping numbers exactly (memory limits overflow float64).
func editJSON(path string, edit func(map[string]any)) error {
	data, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	decoder := json.NewDecoder(bytes.NewReader(data))
	decoder.UseNumber()
	var doc map[string]any
	if err := decoder.Decode(&doc); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	edit(doc)
	out, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, info.Mode().Perm())
}
