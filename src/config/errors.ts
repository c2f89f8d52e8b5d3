// ConfigError: every hast.conf failure (open, syntax, validation), with file, line and keyword.
// HAST-SPEC §1.7 (messages and exit codes), STYLE §2.7.
import { EX } from '../util/sysexits.js';

/** Exit codes a ConfigError can carry: EX_OSFILE (cannot open) or EX_CONFIG (anything else). */
export type ConfigExitCode = typeof EX.OSFILE | typeof EX.CONFIG;

/**
 * A hast.conf error. `message` is `${file}:${line}: ${detail}` (or `${file}: ${detail}` when no
 * line applies, i.e. the file could not be opened).
 * Upstream counts lines from 0 (HAST-SPEC §11 item 22); we count from 1 as editors do.
 */
export class ConfigError extends SyntaxError {
  override readonly name = 'ConfigError';
  /** Stable code for scripts and the error catalogue. */
  readonly code = 'ERR_HAST_CONFIG';
  /** Absolute (or as given) path of the configuration file. */
  readonly file: string;
  /** Line number counted from 1; 0 when the file could not be opened. */
  readonly line: number;
  /** The keyword of the offending statement, when there is one. */
  readonly keyword: string | undefined;
  /** 72 (EX_OSFILE) when the file cannot be opened, 78 (EX_CONFIG) otherwise. */
  readonly exitCode: ConfigExitCode;
  /** The message without the `file:line: ` prefix (upstream's log text). */
  readonly detail: string;

  constructor(
    detail: string,
    file: string,
    line: number,
    opts: { keyword?: string | undefined; exitCode?: ConfigExitCode; cause?: unknown } = {},
  ) {
    super(
      line > 0 ? `${file}:${line}: ${detail}` : `${file}: ${detail}`,
      opts.cause === undefined ? undefined : { cause: opts.cause },
    );
    this.file = file;
    this.line = line;
    this.keyword = opts.keyword;
    this.exitCode = opts.exitCode ?? EX.CONFIG;
    this.detail = detail;
  }
}
