import type { SecretsConfig } from '../config';
import type { KeyManagementService } from './kms';

/**
 * The KMS provider the secrets service's configuration chooses; nothing else selects one. Each
 * provider's module (and its client library: the AWS and Google SDKs, the PKCS#11 native module) is
 * loaded only when chosen, which keeps the others out of start-up time and memory.
 */
export async function loadKms(config: SecretsConfig): Promise<KeyManagementService> {
  switch (config.SECRETS_KMS_PROVIDER) {
    case 'local':
      return (await import('./local-kms')).loadLocalKms(config.SECRETS_LOCAL_KEYRING_FILE!);
    case 'pkcs11':
      return (await import('./pkcs11-kms')).createPkcs11Kms({
        library: config.SECRETS_PKCS11_LIBRARY!,
        tokenLabel: config.SECRETS_PKCS11_TOKEN_LABEL!,
        pin: config.SECRETS_PKCS11_PIN!,
        kekLabel: config.SECRETS_PKCS11_KEK_LABEL,
      });
    case 'aws-kms':
      return (await import('./aws-kms')).loadAwsKms({ region: config.SECRETS_AWS_REGION!, endpoint: config.SECRETS_AWS_KMS_ENDPOINT, kekId: config.SECRETS_AWS_KEK_ID });
    case 'gcp-kms':
      return (await import('./gcp-kms')).loadGcpKms({ keyName: config.SECRETS_GCP_KMS_KEY_NAME!, apiEndpoint: config.SECRETS_GCP_KMS_ENDPOINT });
  }
}
