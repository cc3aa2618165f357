/* version.h: the knwb release number, printed by `knwb --version` and written into provenance. */
#ifndef KNWB_VERSION
#define KNWB_VERSION "0.1.0"
#endif
