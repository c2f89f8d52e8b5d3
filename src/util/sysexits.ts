// sysexits(3) codes, kept numerically identical to upstream hastd/hastctl for scripting parity.
export const EX = {
  OK: 0,
  USAGE: 64,
  DATAERR: 65,
  NOINPUT: 66,
  UNAVAILABLE: 69,
  SOFTWARE: 70,
  OSERR: 71,
  OSFILE: 72,
  IOERR: 74,
  TEMPFAIL: 75,
  CONFIG: 78,
} as const;
export type ExitCode = (typeof EX)[keyof typeof EX];
