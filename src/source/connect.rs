//! Building the API client from the kubeconfig the way kubectl finds it.

use std::path::PathBuf;

use kube::config::{Config, KubeConfigOptions, Kubeconfig};

use crate::config::{Setting, Settings};
use crate::source::diagnose::Contact;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("kubeconfig {} ({origin}): {source}", path.display())]
    Kubeconfig {
        path: PathBuf,
        origin: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("kubeconfig from KUBECONFIG={paths}: {source}")]
    KubeconfigEnv {
        paths: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error(
        "no kubeconfig found (KUBECONFIG is not set and ~/.kube/config cannot be used: {kubeconfig}) \
         and not running in a cluster ({in_cluster}); set kubeconfig in the config file, \
         KUBE_EVENT_PIPE_KUBECONFIG or --kubeconfig"
    )]
    NothingFound {
        kubeconfig: String,
        in_cluster: String,
    },
    #[error("cannot build the API client: {0}")]
    Client(#[source] kube::Error),
}

/// A client and, for messages, where it connects and as whom.
pub struct Connection {
    pub client: kube::Client,
    pub contact: Contact,
}

/// kube's own retry layer retries 429/503 silently for minutes; the source backs off and logs
/// each failure itself, so that layer is turned off. The idle bound of a watch is also ours.
pub async fn connect(settings: &Settings) -> Result<Connection, ConnectError> {
    let (mut config, mut contact) = config(settings).await?;
    contact.server = config.cluster_url.to_string();
    config.default_retry = false;
    config.read_timeout = None;
    // Without a CA in the kubeconfig, kube reads the system trust store (about 150 files in
    // /etc/ssl/certs, 15–25 ms at every start). A plain-HTTP server (`kubectl proxy`, a local
    // insecure port) never uses it.
    if config.cluster_url.scheme_str() == Some("http") && config.root_cert.is_none() {
        config.root_cert = Some(Vec::new());
    }
    let client = kube::Client::try_from(config).map_err(ConnectError::Client)?;
    Ok(Connection { client, contact })
}

/// [`connect`] without the contact.
pub async fn client(settings: &Settings) -> Result<kube::Client, ConnectError> {
    Ok(connect(settings).await?.client)
}

/// The kubeconfig read once, so its context and user can be named in messages.
async fn from_kubeconfig(
    kubeconfig: Kubeconfig,
    source: String,
    options: &KubeConfigOptions,
) -> Result<(Config, Contact), kube::config::KubeconfigError> {
    let context = options
        .context
        .clone()
        .or_else(|| kubeconfig.current_context.clone());
    let user = context
        .as_ref()
        .and_then(|name| kubeconfig.contexts.iter().find(|c| &c.name == name))
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.user.clone());
    let config = Config::from_custom_kubeconfig(kubeconfig, options).await?;
    let contact = Contact {
        kubeconfig: source,
        context,
        user,
        ..Contact::default()
    };
    Ok((config, contact))
}

async fn config(settings: &Settings) -> Result<(Config, Contact), ConnectError> {
    let options = KubeConfigOptions {
        context: settings.context.as_ref().map(|c| c.value.clone()),
        ..Default::default()
    };
    if let Some(Setting {
        value: path,
        origin,
    }) = &settings.kubeconfig
    {
        let wrap = |source| ConnectError::Kubeconfig {
            path: path.clone(),
            origin: origin.to_string(),
            source,
        };
        let kubeconfig = Kubeconfig::read_from(path).map_err(wrap)?;
        return from_kubeconfig(kubeconfig, path.display().to_string(), &options)
            .await
            .map_err(wrap);
    }
    if let Ok(paths) = std::env::var("KUBECONFIG")
        && !paths.is_empty()
    {
        let wrap = |source| ConnectError::KubeconfigEnv {
            paths: paths.clone(),
            source,
        };
        let kubeconfig = Kubeconfig::from_env()
            .map_err(wrap)?
            .ok_or_else(|| wrap(kube::config::KubeconfigError::FindPath))?;
        return from_kubeconfig(kubeconfig, format!("KUBECONFIG={paths}"), &options)
            .await
            .map_err(wrap);
    }
    // kubectl's order: ~/.kube/config, then the pod's service account.
    let home = std::env::home_dir()
        .map(|h| h.join(".kube").join("config").display().to_string())
        .unwrap_or_else(|| "~/.kube/config".into());
    let local = match Kubeconfig::read() {
        Ok(kubeconfig) => from_kubeconfig(kubeconfig, home, &options).await,
        Err(e) => Err(e),
    };
    match local {
        Ok(found) => Ok(found),
        Err(kubeconfig) => match Config::incluster() {
            Ok(config) => Ok((
                config,
                Contact {
                    kubeconfig: "none (the pod's in-cluster service account)".into(),
                    ..Contact::default()
                },
            )),
            Err(in_cluster) => Err(ConnectError::NothingFound {
                kubeconfig: kubeconfig.to_string(),
                in_cluster: in_cluster.to_string(),
            }),
        },
    }
}
