{
	"subject": {
		"country": "IR",
		"commonName": {{ toJson .Identity.Name }},
		"serialNumber": {{ toJson .Identity.SerialNumber }},
		"extraNames": [{"type": "2.5.4.12", "value": {{ toJson .Identity.Title }}}]
	},
	"keyUsage": ["digitalSignature", "contentCommitment"],
	"unknownExtKeyUsage": [{{ toJson .OID.EKU.PrescriptionSigning }}],
	"policyIdentifiers": [{{ toJson .OID.Policy.PractitionerSigning }}],
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
