package catalogue

// NewVersion builds a Version without a store, for the search tests.
var NewVersion = newVersion

// FoldName exposes the search folding to the tests.
var FoldName = foldName
