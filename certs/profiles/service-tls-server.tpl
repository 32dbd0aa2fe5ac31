{
	"subject": {
		"country": "IR",
		{{- with .Identity.Organization }}
		"organization": {{ toJson . }},
		{{- end }}
		"commonName": {{ toJson .Identity.Name }}
	},
	"dnsNames": {{ toJson .Identity.DNSNames }},
	"ipAddresses": {{ toJson .Identity.IPAddresses }},
{{- if typeIs "*rsa.PublicKey" .Insecure.CR.PublicKey }}
	"keyUsage": ["digitalSignature", "keyEncipherment"],
{{- else }}
	"keyUsage": ["digitalSignature"],
{{- end }}
	"extKeyUsage": ["serverAuth"],
	"policyIdentifiers": [{{ toJson .OID.Policy.ServiceTLS }}],
	"extensions": [{"id": {{ toJson .OID.IdentityExtension }}, "critical": false, "value": {{ toJson .Identity.Extension }}}],
	{{- with .URL.CRL }}
	"crlDistributionPoints": {{ toJson . }},
	{{- end }}
	{{- with .URL.OCSP }}
	"ocspServer": {{ toJson . }},
	{{- end }}
	{{- with .URL.Issuer }}
	"issuingCertificateURL": {{ toJson . }},
	{{- end }}
	"basicConstraints": {"isCA": false}
}
