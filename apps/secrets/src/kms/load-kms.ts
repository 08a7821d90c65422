import type { SecretsConfig } from '../config';
import { loadAwsKms } from './aws-kms';
import { loadGcpKms } from './gcp-kms';
import type { KeyManagementService } from './kms';
import { loadLocalKms } from './local-kms';
import { createPkcs11Kms } from './pkcs11-kms';

/** The KMS provider the secrets service's configuration chooses; nothing else selects one. */
export async function loadKms(config: SecretsConfig): Promise<KeyManagementService> {
  switch (config.SECRETS_KMS_PROVIDER) {
    case 'local':
      return loadLocalKms(config.SECRETS_LOCAL_KEYRING_FILE!);
    case 'pkcs11':
      return createPkcs11Kms({
        library: config.SECRETS_PKCS11_LIBRARY!,
        tokenLabel: config.SECRETS_PKCS11_TOKEN_LABEL!,
        pin: config.SECRETS_PKCS11_PIN!,
        kekLabel: config.SECRETS_PKCS11_KEK_LABEL,
      });
    case 'aws-kms':
      return loadAwsKms({ region: config.SECRETS_AWS_REGION!, endpoint: config.SECRETS_AWS_KMS_ENDPOINT, kekId: config.SECRETS_AWS_KEK_ID });
    case 'gcp-kms':
      return loadGcpKms({ keyName: config.SECRETS_GCP_KMS_KEY_NAME!, apiEndpoint: config.SECRETS_GCP_KMS_ENDPOINT });
  }
}
