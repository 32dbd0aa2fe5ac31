package trustd

// SignARLWith is signARL, for tests that give it their own audit recorder.
var SignARLWith = signARL
