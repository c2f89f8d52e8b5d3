// Usage texts of hastd and hastctl (upstream wording plus our --node/--json options).
export const HASTCTL_USAGE = `usage: hastctl create [-d] [-c config] [--node name] [-e extentsize] [-k keepdirty]
\t\t[-m mediasize] name ...
       hastctl role [-d] [-c config] [--node name] [--force] <init | primary | secondary> all | name ...
       hastctl list [-d] [-c config] [--node name] [--json] [all | name ...]
       hastctl status [-d] [-c config] [--node name] [--json] [-t] [all | name ...]
       hastctl dump [-d] [-c config] [--node name] [all | name ...]
       hastctl check [-c config] [--node name] [all | name ...]
       hastctl events [-c config] [--node name] [--json] [--timestamps] [all | name ...]
       hastctl --version
`;

export const HASTD_USAGE = `usage: hastd [-dFh] [-c config] [-P pidfile] [--node name]
       hastd -n [-c config] [--node name]
       hastd --version
`;
