import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigMap, Namespace, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { Job } from 'kubernetes-models/batch/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { INetworkPolicyPeer } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicyPeer';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import type { z } from 'zod';
import { serviceSettingsSchemas } from './config-reference';
import { devCredentialFiles, generateDevCredentials } from './dev-credentials';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const k8s = join(root, 'infra', 'k8s');
const read = (path: string) => readFileSync(join(k8s, path), 'utf8');

interface Kustomization {
  namespace: string;
  resources: string[];
  images: Array<{ name: string }>;
  secretGenerator: Array<{ name: string; envs: string[] }>;
}

// Every kind the manifests use, with the model (and its bundled JSON schema) that validates it.
const models: Record<string, new (data: never) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'batch/v1/Job': Job,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
};

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

const kustomization = parse(read('kustomization.yaml')) as Kustomization;
const services = Object.keys(serviceSettingsSchemas) as Array<keyof typeof serviceSettingsSchemas>;
const kmsSetting = /KMS|KEYRING|PKCS11/;

/** KEY=VALUE lines, as kustomize's secretGenerator reads an `envs` file. */
function dotenv(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .split('\n')
      .filter((l) => l.trim() && !l.trim().startsWith('#'))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

/**
 * The objects `kubectl apply -k infra/k8s` would create: each resource file's documents in the
 * kustomization's namespace, and one Secret per secretGenerator entry (without kustomize's name
 * hash, which it also writes into every reference, so references resolve by the base name here).
 */
function render(envFiles: Record<string, string>): K8sObject[] {
  const objects = kustomization.resources.flatMap((file) =>
    parseAllDocuments(read(file)).map((doc) => {
      expect(doc.errors, file).toEqual([]);
      return doc.toJS() as K8sObject;
    }),
  );
  const secrets = kustomization.secretGenerator.map((g) => ({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: g.name },
    stringData: Object.assign({}, ...g.envs.map((f) => dotenv(envFiles[f] ?? ''))) as Record<string, string>,
  }));
  return [...objects, ...secrets].map((o) => (o.kind === 'Namespace' ? o : { ...o, metadata: { ...o.metadata, namespace: kustomization.namespace } }));
}

const byKind = <T,>(objects: K8sObject[], kind: string) => objects.filter((o) => o.kind === kind) as unknown as T[];

interface DeploymentLike {
  metadata: { name: string };
  spec: { replicas: number; template: { metadata: { labels: Record<string, string>; annotations?: Record<string, string> }; spec: PodSpec } };
}
interface PodSpec {
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
  containers: IContainer[];
  initContainers?: IContainer[];
  volumes?: Array<{ name: string; secret?: { secretName: string } }>;
}
interface NetworkPolicyLike {
  metadata: { name: string };
  spec: {
    podSelector: { matchLabels?: Record<string, string> };
    policyTypes: string[];
    ingress?: Array<{ from?: INetworkPolicyPeer[]; ports?: Array<{ port: number }> }>;
    egress?: Array<{ to?: INetworkPolicyPeer[]; ports?: Array<{ port: number }> }>;
  };
}

describe('infra/k8s: the manifests kustomize renders', () => {
  let objects: K8sObject[];
  let deployments: DeploymentLike[];
  let secretData: Map<string, Record<string, string>>;

  beforeAll(async () => {
    // The three credential env files `npm run dev:credentials` writes, from fresh credentials; the
    // Postgres URLs and the KMS settings from the examples the operator copies.
    const creds = devCredentialFiles(await generateDevCredentials());
    const envFiles: Record<string, string> = {
      'secrets/auth.env': creds['auth.env']!,
      'secrets/config.env': creds['config.env']!,
      'secrets/sync-worker.env': creds['sync-worker.env']!,
      'secrets/postgres.env': read('secrets/postgres.env.example'),
      'secrets/kms.env': read('secrets/kms.env.example'),
    };
    for (const g of kustomization.secretGenerator) for (const f of g.envs) expect(Object.keys(envFiles), `${g.name}: ${f}`).toContain(f);
    objects = render(envFiles);
    deployments = byKind<DeploymentLike>(objects, 'Deployment');
    secretData = new Map(byKind<{ metadata: { name: string }; stringData: Record<string, string> }>(objects, 'Secret').map((s) => [s.metadata.name, s.stringData]));
  });

  it('validates every object against the Kubernetes schema of its kind (kubernetes-models, offline)', () => {
    const problems: string[] = [];
    for (const o of objects) {
      const Model = models[`${o.apiVersion}/${o.kind}`];
      if (!Model) {
        problems.push(`${o.kind} ${o.metadata.name}: no schema for ${o.apiVersion}/${o.kind}`);
        continue;
      }
      try {
        new Model(o as never).validate();
      } catch (err) {
        problems.push(`${o.kind} ${o.metadata.name}: ${(err as Error).message}`);
      }
    }
    expect(problems).toEqual([]);
    expect(new Set(objects.map((o) => `${o.kind}/${o.metadata.name}`)).size, 'names are unique per kind').toBe(objects.length);
  });

  /** A container's environment as the kubelet would give it: envFrom first, then env, references resolved. */
  const environmentOf = (c: IContainer): Record<string, string> => {
    const env: Record<string, string> = {};
    for (const from of c.envFrom ?? []) {
      if (from.configMapRef) Object.assign(env, byKind<{ metadata: { name: string }; data: Record<string, string> }>(objects, 'ConfigMap').find((m) => m.metadata.name === from.configMapRef!.name)!.data);
      if (from.secretRef) Object.assign(env, secretData.get(from.secretRef.name ?? '')!);
    }
    for (const e of c.env ?? []) {
      const ref = e.valueFrom?.secretKeyRef;
      env[e.name] = ref ? secretData.get(ref.name!)![ref.key]! : e.value!;
      expect(env[e.name], `${c.name}: ${e.name} resolves`).toBeDefined();
    }
    return env;
  };

  const containerOf = (name: string) => {
    const d = deployments.find((x) => x.metadata.name === name);
    expect(d, `Deployment ${name}`).toBeDefined();
    return d!.spec.template.spec.containers[0]!;
  };

  it('runs the four services, one Deployment each, from the image with its own CMD (the telemetry preload) and its APP', () => {
    expect(deployments.map((d) => d.metadata.name).sort()).toEqual([...services].sort());
    const images = kustomization.images.map((i) => i.name);
    for (const name of services) {
      const c = containerOf(name);
      expect(images, `${name} runs the image kustomize sets`).toContain(c.image);
      expect(c.command, `${name}: no command, so the image's CMD (node --import ./dist/preload.mjs) runs`).toBeUndefined();
      expect(c.args, name).toBeUndefined();
      expect(environmentOf(c).APP, name).toBe(name);
    }
  });

  for (const name of services) {
    it(`${name}: its environment parses with its settings schema, and holds no setting the schema does not know`, () => {
      // APP is read by the image's CMD (which bundle to run), not by the service.
      const { APP: _app, ...env } = environmentOf(containerOf(name));
      const schema = serviceSettingsSchemas[name];
      const parsed = schema.safeParse(env);
      expect(parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`), name).toEqual([]);
      const known = Object.keys(schema.shape as Record<string, z.ZodType>);
      expect(Object.keys(env).filter((k) => !known.includes(k)), `${name}: settings it would ignore`).toEqual([]);
      expect(env.COFFER_ENV, name).toBe('production');
      expect(env.COFFER_STREAM_REPLICAS, `${name}: its stream kept on the three NATS servers`).toBe('3');
    });
  }

  it('gives KMS settings to secrets alone, and each service only its own credentials', () => {
    const secretsUsed = (d: DeploymentLike) => {
      const spec = d.spec.template.spec;
      const names = [...spec.containers, ...(spec.initContainers ?? [])].flatMap((c) => [
        ...(c.envFrom ?? []).flatMap((f) => (f.secretRef ? [f.secretRef.name] : [])),
        ...(c.env ?? []).flatMap((e) => (e.valueFrom?.secretKeyRef ? [e.valueFrom.secretKeyRef.name!] : [])),
      ]);
      return [...new Set([...names, ...(spec.volumes ?? []).flatMap((v) => (v.secret ? [v.secret.secretName] : []))])].sort();
    };
    expect(Object.fromEntries(deployments.map((d) => [d.metadata.name, secretsUsed(d)]))).toEqual({
      auth: ['coffer-auth', 'coffer-postgres'],
      secrets: ['coffer-kms', 'coffer-postgres'],
      config: ['coffer-config', 'coffer-postgres'],
      'sync-worker': ['coffer-postgres', 'coffer-sync-worker'],
    });
    const withKms = deployments.filter((d) => d.spec.template.spec.containers.some((c) => Object.keys(environmentOf(c)).some((k) => kmsSetting.test(k)))).map((d) => d.metadata.name);
    expect(withKms).toEqual(['secrets']);
    expect(Object.keys(secretData.get('coffer-kms')!).every((k) => kmsSetting.test(k) || k.startsWith('SECRETS_AWS_') || k.startsWith('SECRETS_GCP_'))).toBe(true);
    // Each service's database URL is its own key, so each may log in as its own role.
    for (const name of services) {
      const ref = containerOf(name).env!.find((e) => e.name === 'DATABASE_URL')!.valueFrom!.secretKeyRef!;
      expect(ref.key, name).toBe(`${name.toUpperCase().replace('-', '_')}_DATABASE_URL`);
    }
  });

  it('runs every container as non-root on a read-only root file system, with probes, requests and limits, and scrape annotations on the services', () => {
    const workloads = [...deployments, ...byKind<DeploymentLike>(objects, 'StatefulSet')];
    expect(workloads.length).toBe(services.length + 1);
    for (const w of workloads) {
      const pod = w.spec.template.spec;
      expect(w.spec.replicas, `${w.metadata.name} replicas`).toBeGreaterThanOrEqual(2);
      for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) {
        const where = `${w.metadata.name}/${c.name}`;
        expect(c.securityContext?.runAsNonRoot ?? pod.securityContext?.runAsNonRoot, `${where} runAsNonRoot`).toBe(true);
        expect(c.securityContext?.runAsUser ?? pod.securityContext?.runAsUser, `${where} runAsUser`).toBeGreaterThan(0);
        expect(c.securityContext?.readOnlyRootFilesystem, `${where} readOnlyRootFilesystem`).toBe(true);
        expect(c.securityContext?.allowPrivilegeEscalation, `${where} allowPrivilegeEscalation`).toBe(false);
        expect(c.securityContext?.capabilities?.drop, `${where} drops capabilities`).toEqual(['ALL']);
        expect(c.livenessProbe, `${where} livenessProbe`).toBeDefined();
        expect(c.readinessProbe, `${where} readinessProbe`).toBeDefined();
        for (const r of ['cpu', 'memory']) {
          expect(c.resources?.requests?.[r], `${where} requests ${r}`).toBeDefined();
          expect(c.resources?.limits?.[r], `${where} limits ${r}`).toBeDefined();
        }
      }
    }
    for (const name of services) {
      const c = containerOf(name);
      const env = environmentOf(c);
      const metricsPort = Number(env[`${name.toUpperCase().replace('-', '_')}_METRICS_ADDRESS`]!.split(':').pop());
      const port = (p: number | string | undefined) => (typeof p === 'string' ? c.ports!.find((x) => x.name === p)!.containerPort : p);
      expect([c.livenessProbe!.httpGet!.path, port(c.livenessProbe!.httpGet!.port)], `${name} liveness`).toEqual(['/healthz', metricsPort]);
      expect([c.readinessProbe!.httpGet!.path, port(c.readinessProbe!.httpGet!.port)], `${name} readiness`).toEqual(['/readyz', metricsPort]);
      const grpcPort = Number(env[`${name.toUpperCase().replace('-', '_')}_GRPC_ADDRESS`]!.split(':').pop());
      expect(c.ports!.map((p) => p.containerPort).sort(), name).toEqual([grpcPort, metricsPort].sort());
      const annotations = deployments.find((d) => d.metadata.name === name)!.spec.template.metadata.annotations ?? {};
      expect(annotations, name).toMatchObject({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(metricsPort), 'prometheus.io/path': '/metrics' });
    }
  });

  it('migrates in a Job of its own (`coffer migrate` from the image, each schema as its service\'s role), and the services only check', () => {
    const jobs = byKind<{ metadata: { name: string }; spec: { backoffLimit?: number; template: { metadata: { labels: Record<string, string> }; spec: PodSpec & { restartPolicy: string } } } }>(objects, 'Job');
    expect(jobs.map((j) => j.metadata.name)).toEqual(['coffer-migrate']);
    const pod = jobs[0]!.spec.template.spec;
    expect(pod.restartPolicy).toBe('Never');
    expect(pod.containers).toHaveLength(1);
    const c = pod.containers[0]!;
    expect(kustomization.images.map((i) => i.name)).toContain(c.image);
    // The CLI bundle the image builds (infra/Dockerfile), run with its `migrate` command.
    expect(c.command).toEqual(['node', 'dist/apps/cli/main.js', 'migrate']);
    expect(readFileSync(join(root, 'infra', 'Dockerfile'), 'utf8')).toMatch(/node tools\/build-app\.mjs [^\n]*\bcli\b/);
    const env = environmentOf(c);
    for (const name of services) expect(env[`${name.toUpperCase().replace('-', '_')}_DATABASE_URL`], `${name}'s own database URL`).toMatch(/^postgres:\/\//);
    expect(Object.keys(env).filter((k) => kmsSetting.test(k) || k.endsWith('_CLIENT_SECRET') || k.startsWith('SECRETS_AWS_')), 'no KMS setting or credential').toEqual([]);
    expect((c.envFrom ?? []).map((f) => f.secretRef?.name ?? f.configMapRef?.name)).toEqual(['coffer-postgres']);
    expect(c.securityContext?.runAsNonRoot ?? pod.securityContext?.runAsNonRoot).toBe(true);
    expect(c.securityContext?.runAsUser ?? pod.securityContext?.runAsUser).toBeGreaterThan(0);
    expect(c.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    for (const r of ['cpu', 'memory']) {
      expect(c.resources?.requests?.[r], `requests ${r}`).toBeDefined();
      expect(c.resources?.limits?.[r], `limits ${r}`).toBeDefined();
    }
    // The services apply nothing: each refuses to start while a migration is pending.
    for (const name of services) expect(environmentOf(containerOf(name)).COFFER_MIGRATIONS, name).toBe('check');
  });

  it('runs NATS as a JetStream cluster of three with routes to each member', () => {
    const nats = byKind<DeploymentLike & { spec: { serviceName: string } }>(objects, 'StatefulSet');
    expect(nats.map((s) => [s.metadata.name, s.spec.replicas])).toEqual([['coffer-nats', 3]]);
    const conf = byKind<{ metadata: { name: string }; data: Record<string, string> }>(objects, 'ConfigMap').find((m) => m.metadata.name === 'coffer-nats')!.data['nats.conf']!;
    expect(conf).toMatch(/jetstream \{[^}]*store_dir: \/data/);
    expect(conf).toMatch(/cluster \{[^]*port: 6222/);
    const routes = [...conf.matchAll(/nats:\/\/([\w-]+)\.([\w-]+):6222/g)].map((m) => [m[1], m[2]]);
    expect(routes).toEqual([0, 1, 2].map((i) => [`coffer-nats-${i}`, nats[0]!.spec.serviceName]));
    const common = byKind<{ metadata: { name: string }; data: Record<string, string> }>(objects, 'ConfigMap').find((m) => m.metadata.name === 'coffer-common')!.data;
    expect(common.NATS_URL!.split(',')).toEqual([0, 1, 2].map((i) => `nats://coffer-nats-${i}.${nats[0]!.spec.serviceName}:4222`));
  });

  it('allows exactly the calls the design draws: NetworkPolicy ingress and egress agree on every pair', () => {
    const policies = byKind<NetworkPolicyLike>(objects, 'NetworkPolicy');
    const nameOf = (labels: Record<string, string> | undefined) => labels?.['app.kubernetes.io/name'] ?? (labels?.['coffer.io/client'] === 'true' ? 'client' : undefined);
    const peerName = (peer: INetworkPolicyPeer): string => {
      if (peer.ipBlock) return `ip:${peer.ipBlock.cidr}${peer.ipBlock.except ? '-private' : ''}`;
      if (peer.namespaceSelector && !peer.podSelector) return `namespace:${peer.namespaceSelector.matchLabels?.['kubernetes.io/metadata.name'] ?? '*'}`;
      return nameOf(peer.podSelector?.matchLabels as Record<string, string>) ?? `pods:${JSON.stringify(peer.podSelector)}`;
    };
    const ingress = new Set<string>();
    const egress = new Set<string>();
    for (const p of policies) {
      const target = nameOf(p.spec.podSelector.matchLabels);
      if (!target) {
        // Namespace-wide: the default deny, and DNS egress to kube-dns only.
        expect(p.spec.ingress ?? [], p.metadata.name).toEqual([]);
        for (const rule of p.spec.egress ?? []) expect(rule.ports!.map((x) => x.port), p.metadata.name).toEqual([53, 53]);
        continue;
      }
      expect(p.spec.policyTypes.sort(), target).toEqual(['Egress', 'Ingress']);
      for (const rule of p.spec.ingress ?? []) for (const peer of rule.from!) for (const port of rule.ports!) ingress.add(`${peerName(peer)} → ${target}:${port.port}`);
      for (const rule of p.spec.egress ?? []) for (const peer of rule.to!) for (const port of rule.ports ?? [{ port: 0 }]) egress.add(`${target} → ${peerName(peer)}:${port.port}`);
    }
    expect(policies.find((p) => p.metadata.name === 'default-deny')!.spec).toEqual({ podSelector: {}, policyTypes: ['Ingress', 'Egress'] });

    const grpc = { auth: 50051, config: 50052, secrets: 50053, 'sync-worker': 50054 } as const;
    const calls: Array<[string, keyof typeof grpc]> = [
      ['config', 'auth'], ['config', 'secrets'], ['config', 'sync-worker'],
      ['secrets', 'auth'],
      ['sync-worker', 'auth'], ['sync-worker', 'config'], ['sync-worker', 'secrets'],
    ];
    const inCluster = [...calls, ...services.map((s) => [s, 'nats'] as [string, string]), ['nats', 'nats'] as [string, string]];
    const port = (to: string) => (to === 'nats' ? 4222 : grpc[to as keyof typeof grpc]);
    const pairs = (list: Array<[string, string]>) => list.map(([from, to]) => `${from} → ${to}:${from === 'nats' ? 6222 : port(to)}`);
    // Ingress between the namespace's own pods, and from the edge and labelled clients outside the design's services.
    const podIngress = [...ingress].filter((r) => !r.startsWith('namespace:')).sort();
    expect(podIngress).toEqual(
      [
        ...pairs(inCluster),
        ...(['auth', 'config'] as const).flatMap((to) => [`edge → ${to}:${grpc[to]}`, `client → ${to}:${grpc[to]}`]),
        `client → sync-worker:${grpc['sync-worker']}`,
      ].sort(),
    );
    const otlp = (s: string) => `${s} → opentelemetry-collector:4317`;
    expect([...egress].sort()).toEqual(
      [
        ...pairs(inCluster),
        ...services.flatMap((s) => [`${s} → ip:0.0.0.0/0:5432`, otlp(s)]),
        'secrets → ip:0.0.0.0/0-private:443',
        'sync-worker → ip:0.0.0.0/0-private:0',
        // The migration Job reaches Postgres and nothing else.
        'migrate → ip:0.0.0.0/0:5432',
      ].sort(),
    );
    // Scrapers reach the metrics ports (and NATS monitoring) and nothing else.
    expect([...ingress].filter((r) => r.startsWith('namespace:')).sort()).toEqual([...services.map((s) => `namespace:monitoring → ${s}:9464`), 'namespace:monitoring → nats:8222'].sort());
  });
});
