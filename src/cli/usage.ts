// Usage texts of hastd and hastctl (upstream wording plus our --node/--json options).
export const HASTCTL_USAGE = `usage: hastctl create [-d] [-c config] [--node name] [-e extentsize] [-k keepdirty]
\t\t[-m mediasize] [--full-sync] name ...
       hastctl role [-d] [-c config] [--node name] [--force] <init | primary | secondary> all | name ...
       hastctl role [-d] [-c config] [--node name] --discard-my-data secondary all | name ...
       hastctl list [-d] [-c config] [--node name] [--json] [all | name ...]
       hastctl status [-d] [-c config] [--node name] [--json] [-t] [all | name ...]
       hastctl dump [-d] [-c config] [--node name] [all | name ...]
       hastctl sync [-d] [-c config] [--node name] <pause | resume> all | name ...
       hastctl verify [-d] [-c config] [--node name] [--json] [--start offset] [--stop offset]
\t\t[--mark] name
       hastctl check [-c config] [--node name] [all | name ...]
       hastctl events [-c config] [--node name] [--json] [--timestamps] [all | name ...]
       hastctl --version
`;

export const HASTD_USAGE = `usage: hastd [-dFh] [-c config] [-P pidfile] [--node name]
       hastd -n [-c config] [--node name]
       hastd --version
`;
