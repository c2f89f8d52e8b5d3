// The metadata layer's typed error: carries the hastctl exit code (sysexits) for create/dump.
import { EX } from '../util/sysexits.js';

/** A metadata/layout/create failure; `exitCode` is what hastctl create/dump exits with. */
export class MetadataError extends Error {
  override readonly name = 'MetadataError';
  readonly exitCode: number;
  constructor(message: string, exitCode: number = EX.DATAERR, options?: { cause?: unknown }) {
    super(message, options);
    this.exitCode = exitCode;
  }
}
