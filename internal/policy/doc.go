// Package policy decides which Hub repos a server may serve, from the
// operator's allow and deny globs.
//
// A repo is named by its subject, "{type}/{id}": type is model, dataset or
// space, id is "namespace/name" or, for the Hub's few namespace-less repos,
// "name" (gpt2 is model/gpt2). A glob is slash-separated like a subject, and
// each of its segments is a path.Match pattern for the segment at the same
// place: '*' is any run of characters within one segment, '?' one
// character, [a-z] and [^a-z] classes, '\' escapes. Matching:
//
//	same number of segments, each matching       -> match
//	last glob segment is exactly "*" (or "**")   -> it matches every remaining
//	                                                segment, one or more
//	otherwise                                    -> no match
//
// So "dataset/*" is every dataset, "model/meta-llama/*" every model of that
// namespace, "*/acme/*" everything of namespace acme, "*" everything, and
// "model/gpt2" only that namespace-less model; "model/*/*" is models with a
// namespace. Matching ignores ASCII case, as the Hub does for repo ids:
// otherwise a denied Meta-Llama would pass as meta-llama.
//
// Decision: a repo matched by any deny glob is refused; else, when allow
// globs exist, only a repo matched by one of them passes; with neither,
// every repo passes.
//
// Globs are operator input, checked when the policy is built: at most three
// segments, no empty ones, a first segment that can match some type, a
// well-formed path.Match pattern in each, and only characters a repo id can
// hold besides the pattern syntax, so that a typo fails at startup instead
// of never matching.
package policy
