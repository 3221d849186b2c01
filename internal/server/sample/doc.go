// Package sample generates the demo content of `xetproxy demo`, the
// benchmark and the end-to-end tests: a safetensors file of any size with a
// valid header and bf16-like weights, small text files, and a helper that
// loads a model and a dataset repo into a fakehub.Hub.
//
// The weights are a pure function of (seed, offset): every 8 data bytes are
// four bf16 values drawn from splitmix64(seed + word index), with small
// exponents like trained weights (|x| in [2^-9, 2^-1]). So content can be
// regenerated anywhere (to compare downloads) without keeping it.
package sample
