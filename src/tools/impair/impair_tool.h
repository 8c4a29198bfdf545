/* impair_tool.h - the parts of parley-impair shared between its files. */
#ifndef PL_IMPAIR_TOOL_H
#define PL_IMPAIR_TOOL_H

#include <stdbool.h>
#include <stdint.h>

/* Whole-string number parsing; false on junk, overflow or an empty string. */
bool pl_tool_parse_double(const char *s, double *out);
bool pl_tool_parse_u64(const char *s, uint64_t *out);

/* `parley-impair echo` and `parley-impair probe` (probe.c); argv starts
 * after the subcommand. Return the process exit code. */
int pl_tool_echo(int argc, char **argv);
int pl_tool_probe(int argc, char **argv);

#endif
