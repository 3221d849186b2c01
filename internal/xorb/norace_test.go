//go:build !race

package xorb

const raceEnabled = false
