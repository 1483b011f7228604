// Package config loads Synapse's homeserver.yaml format.
//
// A configuration is one file, several files given in order, or a directory
// whose *.yaml files are taken in name order (Synapse's find_config_files).
// Files are merged the way Synapse merges them: a shallow, top-level merge in
// which a later file replaces a whole top-level key of an earlier one.
//
// Real homeserver.yaml files hold hundreds of keys this project does not use,
// so unknown keys are kept (Raw) but never rejected. The sections the tools do
// use (database, databases, listeners, pid files, worker keys,
// background_updates, synctl cache factors) are decoded strictly: a wrong
// type is an error that names the file, the line and the key.
//
// Database passwords are never printed: Database implements fmt.Stringer and
// fmt.GoStringer with the password redacted, and errors never include args.
package config
