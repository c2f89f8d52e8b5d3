// Test certificates made at test time with openssl(1): a CA, node certificates signed by it
// (optionally already expired), and SHA-256 fingerprints for `tlspeer`.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Ca {
  readonly dir: string;
  readonly cert: string;
  readonly key: string;
}

export interface NodeCert {
  readonly cert: string;
  readonly key: string;
}

function openssl(args: readonly string[], cwd?: string): string {
  return execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

/** A self-signed CA in `dir/<name>`. */
export function makeCa(dir: string, name: string): Ca {
  const d = join(dir, name);
  mkdirSync(d, { recursive: true });
  const cert = join(d, 'ca.pem');
  const key = join(d, 'ca.key');
  openssl(['req', '-x509', ...EC, '-keyout', key, '-out', cert, '-subj', `/CN=${name}`, '-days', '2']);
  writeFileSync(join(d, 'index.txt'), '');
  writeFileSync(join(d, 'serial'), '01\n');
  writeFileSync(
    join(d, 'ca.cnf'),
    '[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nserial = serial\nnew_certs_dir = .\ndefault_md = sha256\npolicy = p\nunique_subject = no\ncopy_extensions = copy\n[p]\ncommonName = supplied\n',
  );
  return { dir: d, cert, key };
}

/**
 * A node certificate signed by `ca`; `expired`: valid only on 2020-01-01; `san`: a
 * subjectAltName such as `IP:127.0.0.1` (what an NBD client checks). Key mode 0600.
 */
export function issue(ca: Ca, name: string, opts: { expired?: boolean; san?: string } = {}): NodeCert {
  const key = join(ca.dir, `${name}.key`);
  const csr = join(ca.dir, `${name}.csr`);
  const cert = join(ca.dir, `${name}.pem`);
  const ext = opts.san !== undefined ? ['-addext', `subjectAltName=${opts.san}`] : [];
  openssl(['req', ...EC, '-keyout', key, '-out', csr, '-subj', `/CN=${name}`, ...ext]);
  chmodSync(key, 0o600);
  const dates =
    opts.expired === true ? ['-startdate', '20200101000000Z', '-enddate', '20200102000000Z'] : ['-days', '2'];
  openssl(
    [
      'ca',
      '-batch',
      '-config',
      'ca.cnf',
      '-keyfile',
      ca.key,
      '-cert',
      ca.cert,
      '-in',
      csr,
      '-out',
      cert,
      '-notext',
      ...dates,
    ],
    ca.dir,
  );
  return { cert, key };
}

/** SHA-256 fingerprint as `tlspeer` takes it (AB:CD:…). */
export function fingerprint(cert: string): string {
  const out = openssl(['x509', '-in', cert, '-noout', '-fingerprint', '-sha256']);
  return out.trim().replace(/^.*=/, '');
}

/** hast.conf lines for a node: `tlscert`/`tlskey`, and `tlsca` and/or `tlspeer`. */
export function tlsLines(c: NodeCert, check: { readonly ca?: string; readonly peer?: string }): string {
  let s = `tlscert ${c.cert}\n    tlskey ${c.key}`;
  if (check.ca !== undefined) s += `\n    tlsca ${check.ca}`;
  if (check.peer !== undefined) s += `\n    tlspeer ${check.peer}`;
  return s;
}
