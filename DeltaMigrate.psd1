@{
    RootModule           = 'module/bin/DeltaMigrate.dll'
    ModuleVersion        = '0.1.0'
    GUID                 = '6f0e3f43-4a8e-4c0e-9d4b-2f7f5b1c9a11'
    Author               = 'DeltaMigrate team'
    CompanyName          = 'DeltaMigrate'
    Copyright            = '(c) DeltaMigrate team. MIT licence.'
    Description          = 'Live migration of KVM/QEMU virtual machines over QMP, with QEMU''s own transports and delta compression.'
    PowerShellVersion    = '7.4'
    CompatiblePSEditions = @('Core')
    FormatsToProcess     = @('module/DeltaMigrate.Format.ps1xml')
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
            Tags       = @('KVM', 'QEMU', 'LiveMigration', 'XBZRLE', 'Linux')
            ProjectUri = ''
        }
    }
}
