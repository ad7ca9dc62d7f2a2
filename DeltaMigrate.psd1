@{
    RootModule           = 'module/bin/DeltaMigrate.dll'
    # Imported first: it loads the engine and its dependencies (bin/dependencies) into the module's own AssemblyLoadContext.
    NestedModules        = @('module/bin/DeltaMigrate.Isolation.dll')
    ModuleVersion        = '0.1.0'
    GUID                 = '6f0e3f43-4a8e-4c0e-9d4b-2f7f5b1c9a11'
    Author               = 'DeltaMigrate team'
    CompanyName          = 'DeltaMigrate'
    Copyright            = '(c) DeltaMigrate team. MIT licence.'
    Description          = 'Live migration of KVM/QEMU virtual machines over QMP, with QEMU''s own transports and delta compression.'
    PowerShellVersion    = '7.4'
    CompatiblePSEditions = @('Core')
    FormatsToProcess     = @('module/DeltaMigrate.Format.ps1xml')
    TypesToProcess       = @('module/DeltaMigrate.Types.ps1xml')
    CmdletsToExport      = @(
        'Start-KvmVM'
        'Get-KvmVM'
        'Stop-KvmVM'
        'Resume-KvmVM'
        'Invoke-KvmQmp'
        'Move-KvmVM'
        'Receive-KvmVM'
        'Export-KvmMigrationReport'
        'Measure-KvmVM'
    )
    FunctionsToExport    = @()
    AliasesToExport      = @()
    VariablesToExport    = @()
    PrivateData          = @{
        PSData = @{
            Tags         = @('KVM', 'QEMU', 'LiveMigration', 'Migration', 'XBZRLE', 'Virtualization', 'Linux', 'PSEdition_Core')
            ProjectUri   = 'https://github.com/DeltaMigrate/DeltaMigrate'
            LicenseUri   = 'https://github.com/DeltaMigrate/DeltaMigrate/blob/main/LICENSE'
            ReleaseNotes = @'
0.1.0: first release. Move-KvmVM live-migrates a KVM/QEMU VM on one host or to another
(Receive-KvmVM, or -DestinationHost/-Session over PowerShell remoting) in four modes: Delta
(XBZRLE against a mirrored page cache, LZ4, AES-GCM tunnel; the default), Lz4, Native (QEMU's
XBZRLE) and None; every migration commits in two phases. Measure-KvmVM predicts each mode;
Export-KvmMigrationReport charts a result (also one read back with Import-Clixml).
Linux x64 and arm64.
'@
        }
    }
}
