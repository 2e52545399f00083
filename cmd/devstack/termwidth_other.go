//go:build !unix

package main

import "io"

// terminalWidth is 0 where devstack cannot ask the terminal.
func terminalWidth(io.Writer) int { return 0 }
