// This target only exposes include/qarep.h to Swift (tests, bench); the symbols live in libqarep (target QARep).
