// Package benchkit holds helpers the benchmark programs under bench/ share:
// sizes and rates for reports, medians, the peak RSS of a process and the
// sha256 of a download.
package benchkit
