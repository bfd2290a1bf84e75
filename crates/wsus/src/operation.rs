//! The operations a DSS calls, their SOAPAction values and the web services that serve them.

use crate::{DSS_AUTH_NS, SOFTWARE_DISTRIBUTION_NS};

/// A web service of the upstream server (spec 2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// The Server Sync web service: everything but GetAuthorizationCookie.
    ServerSync,
    /// The DSS Authorization web service. GetAuthConfig names its path; this is the spec's.
    DssAuth,
}

impl Endpoint {
    /// The service's path relative to `http://<server>:<port>/`.
    pub fn path(&self) -> &'static str {
        match self {
            Endpoint::ServerSync => "ServerSyncWebService/ServerSyncWebService.asmx",
            Endpoint::DssAuth => "DssAuthWebService/DssAuthWebService.asmx",
        }
    }

    /// The service's URL under a server's root URL (`https://uss.example:8531`, with or without a slash).
    pub fn url(&self, server_root: &str) -> String {
        format!("{}/{}", server_root.trim_end_matches('/'), self.path())
    }
}

/// An operation this DSS performs (spec 3.1.4.1–3.1.4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    GetAuthConfig,
    GetAuthorizationCookie,
    GetCookie,
    GetConfigData,
    GetRevisionIdList,
    GetUpdateData,
}

impl Operation {
    /// Every operation, in the order a sync performs them.
    pub const ALL: [Operation; 6] = [
        Operation::GetAuthConfig,
        Operation::GetAuthorizationCookie,
        Operation::GetCookie,
        Operation::GetConfigData,
        Operation::GetRevisionIdList,
        Operation::GetUpdateData,
    ];

    /// The operation's name, which is also its request element's name.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::GetAuthConfig => "GetAuthConfig",
            Operation::GetAuthorizationCookie => "GetAuthorizationCookie",
            Operation::GetCookie => "GetCookie",
            Operation::GetConfigData => "GetConfigData",
            Operation::GetRevisionIdList => "GetRevisionIdList",
            Operation::GetUpdateData => "GetUpdateData",
        }
    }

    /// The SOAPAction, exactly as the spec's `soap:operation` elements give it.
    pub fn soap_action(&self) -> &'static str {
        match self {
            Operation::GetAuthConfig => {
                "http://www.microsoft.com/SoftwareDistribution/GetAuthConfig"
            }
            Operation::GetAuthorizationCookie => {
                "http://www.microsoft.com/SoftwareDistribution/Server/DssAuthWebService/GetAuthorizationCookie"
            }
            Operation::GetCookie => "http://www.microsoft.com/SoftwareDistribution/GetCookie",
            Operation::GetConfigData => {
                "http://www.microsoft.com/SoftwareDistribution/GetConfigData"
            }
            Operation::GetRevisionIdList => {
                "http://www.microsoft.com/SoftwareDistribution/GetRevisionIdList"
            }
            Operation::GetUpdateData => {
                "http://www.microsoft.com/SoftwareDistribution/GetUpdateData"
            }
        }
    }

    /// The web service that serves the operation.
    pub fn endpoint(&self) -> Endpoint {
        match self {
            Operation::GetAuthorizationCookie => Endpoint::DssAuth,
            _ => Endpoint::ServerSync,
        }
    }

    /// The namespace of the operation's request and response elements.
    pub fn namespace(&self) -> &'static str {
        match self {
            Operation::GetAuthorizationCookie => DSS_AUTH_NS,
            _ => SOFTWARE_DISTRIBUTION_NS,
        }
    }

    /// The response element in the SOAP body.
    pub fn response_element(&self) -> &'static str {
        match self {
            Operation::GetAuthConfig => "GetAuthConfigResponse",
            Operation::GetAuthorizationCookie => "GetAuthorizationCookieResponse",
            Operation::GetCookie => "GetCookieResponse",
            Operation::GetConfigData => "GetConfigDataResponse",
            Operation::GetRevisionIdList => "GetRevisionIdListResponse",
            Operation::GetUpdateData => "GetUpdateDataResponse",
        }
    }

    /// The result element inside the response element.
    pub fn result_element(&self) -> &'static str {
        match self {
            Operation::GetAuthConfig => "GetAuthConfigResult",
            Operation::GetAuthorizationCookie => "GetAuthorizationCookieResult",
            Operation::GetCookie => "GetCookieResult",
            Operation::GetConfigData => "GetConfigDataResult",
            Operation::GetRevisionIdList => "GetRevisionIdListResult",
            Operation::GetUpdateData => "GetUpdateDataResult",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soap_actions_are_the_namespace_and_the_name() {
        for operation in Operation::ALL {
            assert_eq!(
                operation.soap_action(),
                format!("{}/{}", operation.namespace(), operation.name())
            );
            assert_eq!(
                operation.response_element(),
                format!("{}Response", operation.name())
            );
            assert_eq!(
                operation.result_element(),
                format!("{}Result", operation.name())
            );
        }
    }

    #[test]
    fn only_get_authorization_cookie_goes_to_the_auth_service() {
        for operation in Operation::ALL {
            let expected = if operation == Operation::GetAuthorizationCookie {
                Endpoint::DssAuth
            } else {
                Endpoint::ServerSync
            };
            assert_eq!(operation.endpoint(), expected);
        }
        assert_eq!(
            Endpoint::ServerSync.url("https://uss.example:8531/"),
            "https://uss.example:8531/ServerSyncWebService/ServerSyncWebService.asmx"
        );
    }
}
