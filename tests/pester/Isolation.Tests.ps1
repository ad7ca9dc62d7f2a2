# Dependency isolation: another module has already put an older Microsoft.Extensions.Logging.Abstractions
# into PowerShell's default load context; DeltaMigrate still imports, logs and migrates, because its
# engine and the engine's dependencies load into the module's own AssemblyLoadContext.
BeforeAll {
    . "$PSScriptRoot/TestHelpers.ps1"
    $script:OlderLogging = Join-Path $Root '.tools/nuget/microsoft.extensions.logging.abstractions/6.0.0/lib/net6.0/Microsoft.Extensions.Logging.Abstractions.dll'
    if (-not (Test-Path $OlderLogging)) { throw "Missing ${OlderLogging}: run ./build.ps1 deps." }
}

Describe 'Dependency isolation' {
    It 'migrates with -Compress Delta in a session that loaded an older Microsoft.Extensions.Logging.Abstractions first' {
        # A fresh pwsh: a process loads an assembly name into the default context only once.
        $script = @"
`$ErrorActionPreference = 'Stop'
`$PSStyle.OutputRendering = 'PlainText'   # its errors are quoted in the assertion message
Add-Type -Path '$OlderLogging'
. '$PSScriptRoot/TestHelpers.ps1'
Import-Module '$ModuleUnderTest'
`$runDir = Initialize-TestRunDirectory
try {
    `$src = Start-TestSource -Name iso-src
    `$null = Start-TestDestination -Name iso-dst -Paused
    `$output = Move-KvmVM -Name iso-src -Destination iso-dst -Compress Delta -Bandwidth 40MB -PassThru -Verbose 4>&1
    `$result = `$output | Where-Object { `$_.PSObject.TypeNames -contains 'DeltaMigrate.Engine.Migration.MigrationResult' } | Select-Object -Last 1
    `$png = Join-Path `$runDir 'iso.png'
    `$result | Export-KvmMigrationReport -Path `$png
    `$loaded = foreach (`$a in [AppDomain]::CurrentDomain.GetAssemblies()) {
        `$name = `$a.GetName()
        if (`$name.Name -in 'Microsoft.Extensions.Logging.Abstractions', 'DeltaMigrate', 'DeltaMigrate.Engine', 'SkiaSharp') {
            [pscustomobject]@{ Name = `$name.Name; Version = "`$(`$name.Version)"; Context = [Runtime.Loader.AssemblyLoadContext]::GetLoadContext(`$a).Name }
        }
    }
    `$engine = [AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { `$_.GetName().Name -eq 'DeltaMigrate.Engine' }
    `$logging = `$engine.GetReferencedAssemblies() | Where-Object Name -eq 'Microsoft.Extensions.Logging.Abstractions'
    'ISOLATION ' + ([pscustomobject]@{
        Status = "`$(`$result.Status)"
        Mode = "`$(`$result.Mode)"
        VerboseLines = @(`$output | Where-Object { `$_ -is [Management.Automation.VerboseRecord] }).Count
        PngBytes = (Get-Item `$png).Length
        EngineWantsLogging = "`$(`$logging.Version)"
        CmdletReferences = @((Get-Module DeltaMigrate).ImplementingAssembly.GetReferencedAssemblies().Name)
        Loaded = @(`$loaded)
    } | ConvertTo-Json -Compress -Depth 4)
}
finally { Remove-TestRunDirectory `$runDir }
"@
        $lines = & (Join-Path $PSHOME 'pwsh') -NoProfile -NonInteractive -Command $script 2>&1
        $report = $lines | Where-Object { "$_" -like 'ISOLATION *' } | Select-Object -Last 1
        $report | Should -Not -BeNullOrEmpty -Because "the child pwsh should finish; it printed: $($lines -join [Environment]::NewLine)"
        $LASTEXITCODE | Should -Be 0
        $r = "$report".Substring('ISOLATION '.Length) | ConvertFrom-Json

        $r.Status | Should -Be 'Completed'
        $r.Mode | Should -Be 'Delta'
        $r.VerboseLines | Should -BeGreaterThan 0 -Because "the engine's log reaches -Verbose through its own logging abstractions"
        $r.PngBytes | Should -BeGreaterThan 0 -Because "SkiaSharp's natives resolve from the module's own context"

        $default = @($r.Loaded | Where-Object { $_.Name -eq 'Microsoft.Extensions.Logging.Abstractions' -and $_.Context -eq 'Default' })
        $default.Version | Should -Be '6.0.0.0' -Because 'the session keeps the version it loaded first'
        $ours = @($r.Loaded | Where-Object { $_.Name -eq 'Microsoft.Extensions.Logging.Abstractions' -and $_.Context -eq 'DeltaMigrate' })
        $ours.Count | Should -Be 1
        $ours[0].Version | Should -Be $r.EngineWantsLogging -Because 'the engine binds to the version it was built against'
        [version]$ours[0].Version | Should -BeGreaterThan ([version]'6.0.0.0')

        ($r.Loaded | Where-Object Name -eq 'DeltaMigrate').Context | Should -Be 'Default' -Because 'the cmdlets stay in PowerShell''s context'
        ($r.Loaded | Where-Object Name -eq 'DeltaMigrate.Engine').Context | Should -Be 'DeltaMigrate'
        ($r.Loaded | Where-Object Name -eq 'SkiaSharp').Context | Should -Be 'DeltaMigrate'
        $r.CmdletReferences | Should -Not -Contain 'Microsoft.Extensions.Logging.Abstractions' -Because 'no logging type may be bound in the default context'
    }
}
