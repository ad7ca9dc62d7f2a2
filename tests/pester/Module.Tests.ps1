# The module's surface: manifest, help, WhatIf, error ids. No migration needed.
BeforeAll {
    . "$PSScriptRoot/TestHelpers.ps1"
    Import-Module $ModuleUnderTest -Force
    $script:RunDir = Initialize-TestRunDirectory
}

AfterAll {
    Remove-TestRunDirectory $RunDir
}

BeforeDiscovery {
    $script:Cmdlets = 'Start-KvmVM', 'Get-KvmVM', 'Stop-KvmVM', 'Resume-KvmVM', 'Invoke-KvmQmp', 'Move-KvmVM', 'Receive-KvmVM', 'Measure-KvmVM', 'Export-KvmMigrationReport'
    # One test per help example: its code, as Get-Help shows it (the file is the one the package ships).
    $maml = [xml](Get-Content -Raw "$PSScriptRoot/../../module/en-US/DeltaMigrate.dll-Help.xml")
    $ns = [Xml.XmlNamespaceManager]::new($maml.NameTable)
    $ns.AddNamespace('command', 'http://schemas.microsoft.com/maml/dev/command/2004/10')
    $ns.AddNamespace('dev', 'http://schemas.microsoft.com/maml/dev/2004/10')
    $script:HelpExamples = foreach ($command in $maml.SelectNodes('//command:command', $ns)) {
        $name = $command.SelectSingleNode('command:details/command:name', $ns).InnerText
        $i = 0
        foreach ($code in $command.SelectNodes('command:examples/command:example/dev:code', $ns)) {
            @{ Cmdlet = $name; Number = ++$i; Code = $code.InnerText }
        }
    }
}

Describe 'DeltaMigrate module' {
    It 'exports exactly its cmdlets' {
        (Get-Command -Module DeltaMigrate).Name | Sort-Object | Should -Be ($Cmdlets | Sort-Object)
    }

    It '<_> has help with a description, parameters and examples' -ForEach $Cmdlets {
        $help = Get-Help $_ -Full
        $help.Description.Text | Should -Not -BeNullOrEmpty
        @($help.Examples.Example).Count | Should -BeGreaterOrEqual 2
        foreach ($parameter in (Get-Command $_).Parameters.Values | Where-Object { $_.Name -notin [Management.Automation.PSCmdlet]::CommonParameters -and $_.Name -notin [Management.Automation.PSCmdlet]::OptionalCommonParameters }) {
            ($help.Parameters.Parameter | Where-Object Name -EQ $parameter.Name).Description.Text |
                Should -Not -BeNullOrEmpty -Because "-$($parameter.Name) of $_ needs a description"
        }
    }

    It 'completes VM names for -Name and -Destination from the run directory' {
        $null = Start-TestDestination -Name 'tab-one'
        $null = Start-TestDestination -Name 'tab-two'
        $names = { param($line) (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText }
        & $names 'Get-KvmVM tab-' | Should -Be @('tab-one', 'tab-two')
        & $names 'Move-KvmVM tab-one -Destination tab-t' | Should -Be @('tab-two')
        & $names 'Stop-KvmVM -Name TAB-O' | Should -Be @('tab-one') -Because 'names complete case-insensitively'
        & $names 'Measure-KvmVM nothing-like-this' | Should -BeNullOrEmpty
        Get-KvmVM 'tab-*' | Stop-KvmVM -Force -Confirm:$false
    }

    It 'has an about topic that names every exported cmdlet' {
        $about = Get-Help about_DeltaMigrate | Out-String
        $about | Should -Match 'Move-KvmVM'
        foreach ($name in (Get-Command -Module DeltaMigrate).Name) {
            $about | Should -Match "\b$([regex]::Escape($name))\b" -Because "about_DeltaMigrate should introduce $name"
        }
    }

    It 'help example <Number> of <Cmdlet> parses and calls only commands that exist' -ForEach $HelpExamples {
        $tokens = $errors = $null
        $ast = [Management.Automation.Language.Parser]::ParseInput($Code, [ref]$tokens, [ref]$errors)
        $errors.Message | Should -BeNullOrEmpty -Because "the example's code is PowerShell:`n$Code"
        $names = $ast.FindAll({ $args[0] -is [Management.Automation.Language.CommandAst] }, $true).GetCommandName() | Where-Object { $_ } | Sort-Object -Unique
        foreach ($name in $names) {
            Get-Command $name -ErrorAction Ignore | Should -Not -BeNullOrEmpty -Because "example $Number of $Cmdlet calls '$name'"
        }
    }
}

Describe 'The manifest and the package' {
    BeforeAll {
        $script:Module = Get-Module DeltaMigrate
        $script:Manifest = Join-Path $Module.ModuleBase 'DeltaMigrate.psd1'
    }

    It 'has a valid manifest with project, licence, release notes and tags' {
        $m = Test-ModuleManifest $Manifest -ErrorAction Stop
        $m.Version | Should -Be $Module.Version
        "$($m.ProjectUri)" | Should -Match '^https://'
        "$($m.LicenseUri)" | Should -Match '^https://.*/LICENSE$'
        $m.ReleaseNotes | Should -Match "^$([regex]::Escape($m.Version.ToString())):"
        $m.Tags | Should -Contain 'KVM'
        $m.Tags | Should -Contain 'PSEdition_Core'
        (Test-ModuleManifest (Join-Path $Root 'DeltaMigrate.psd1')).Version | Should -Be $m.Version -Because 'the package is built from the repository''s manifest'
    }

    It 'ships an MIT LICENSE whose holder is the manifest''s Copyright' {
        $license = Get-Content -Raw (Join-Path $Root 'LICENSE')
        $license | Should -Match '^MIT License'
        $holder = (Import-PowerShellDataFile $Manifest).Copyright -replace '^\(c\)\s*', '' -replace '\.\s*MIT licence\.$', ''
        $license | Should -Match "Copyright \(c\) $([regex]::Escape($holder))"
    }

    It 'is the package installed by Install-PSResource, imported by name' -Skip:(-not $env:DELTAMIGRATE_TEST_MODULE) {
        $installed = Get-InstalledPSResource -Name DeltaMigrate -Path (Split-Path (Split-Path $Module.ModuleBase)) -ErrorAction Stop
        $installed.Version | Should -Be $Module.Version
        $Module.ModuleBase | Should -Be (Join-Path $installed.InstalledLocation "DeltaMigrate/$($Module.Version)")
        $Module.ModuleBase | Should -Not -BeLike "$Root*" -Because 'the tests run against what users install, not the build output'
        $Module.Path | Should -Be (Join-Path $Module.ModuleBase 'DeltaMigrate.dll') -Because 'RootModule is relative to the manifest'
        Test-Path (Join-Path $Module.ModuleBase 'en-US/about_DeltaMigrate.help.txt') | Should -BeTrue
        Test-Path (Join-Path $Module.ModuleBase 'LICENSE') | Should -BeTrue
        foreach ($file in 'en-US/DeltaMigrate.dll-Help.xml', 'en-US/about_DeltaMigrate.help.txt', 'DeltaMigrate.Format.ps1xml', 'DeltaMigrate.Types.ps1xml') {
            (Get-FileHash (Join-Path $Module.ModuleBase $file)).Hash | Should -Be (Get-FileHash (Join-Path $Root "module/$file")).Hash -Because "the package ships the repository's $file"
        }
    }

    It 'is under 25 MB installed, with native libraries for linux-x64 and linux-arm64 only' -Skip:(-not $env:DELTAMIGRATE_TEST_MODULE) {
        $size = (Get-ChildItem -Recurse -File $Module.ModuleBase | Measure-Object Length -Sum).Sum
        $size | Should -BeLessThan 25MB
        # Natives live with SkiaSharp in dependencies/, the folder of the module's own load context.
        (Get-ChildItem (Join-Path $Module.ModuleBase 'dependencies/runtimes') -Directory).Name | Sort-Object | Should -Be 'linux-arm64', 'linux-x64'
        foreach ($rid in 'linux-x64', 'linux-arm64') {
            (Get-ChildItem (Join-Path $Module.ModuleBase "dependencies/runtimes/$rid/native")).Name | Sort-Object | Should -Be 'libHarfBuzzSharp.so', 'libSkiaSharp.so'
        }
    }

    It 'loads the charting libraries only when a report is exported' {
        # A fresh pwsh: this one may have drawn a chart already.
        $loaded = & (Join-Path $PSHOME 'pwsh') -NoProfile -NonInteractive -Command "
            `$ErrorActionPreference = 'Stop'
            Import-Module '$ModuleUnderTest'
            `$null = Get-KvmVM; `$null = Get-Help Export-KvmMigrationReport
            [AppDomain]::CurrentDomain.GetAssemblies().GetName().Name -match '^(ScottPlot|SkiaSharp|HarfBuzzSharp|DeltaMigrate.Reports)$'
            'DONE'"
        $LASTEXITCODE | Should -Be 0
        $loaded | Should -Be 'DONE'
    }
}

Describe 'Errors that say what to do' {
    It 'Move-KvmVM names an unknown VM' {
        { Move-KvmVM -Name no-such-vm -Destination 127.0.0.1:4444 -ErrorAction Stop } |
            Should -Throw -ErrorId 'VMNotFound,DeltaMigrate.Module.Commands.MoveKvmVMCommand'
    }

    It 'a pattern that matches several VMs where one is expected is an error naming them' {
        $null = Start-TestDestination -Name amb-one
        $null = Start-TestDestination -Name amb-two
        $err = { Invoke-KvmQmp 'amb-*' query-status -ErrorAction Stop } | Should -Throw -ErrorId 'AmbiguousVMName,DeltaMigrate.Module.Commands.InvokeKvmQmpCommand' -PassThru
        $err.Exception.Message | Should -Match 'amb-one, amb-two'
        Stop-KvmVM 'amb-*' -Force
    }

    It 'Get-KvmVM names an unknown VM but not an empty wildcard' {
        { Get-KvmVM -Name no-such-vm -ErrorAction Stop } | Should -Throw -ErrorId 'VMNotFound,DeltaMigrate.Module.Commands.GetKvmVMCommand'
        Get-KvmVM -Name 'no-such-*' | Should -BeNullOrEmpty
    }

    It 'Start-KvmVM refuses a kernel that does not exist' {
        { Start-KvmVM -Name k -Memory 64MB -Kernel /nonexistent/kernel -ErrorAction Stop } |
            Should -Throw -ErrorId 'KernelNotFound,DeltaMigrate.Module.Commands.StartKvmVMCommand'
    }

    It '<_> refuses a run directory other users can write to' -ForEach 'Get-KvmVM', 'Start-KvmVM' {
        $open = Join-Path ([IO.Path]::GetTempPath()) "dm-pester-open-$([guid]::NewGuid().ToString('n').Substring(0, 8))"
        $null = [IO.Directory]::CreateDirectory($open)
        [IO.File]::SetUnixFileMode($open, [IO.UnixFileMode]0x1FF)   # 0777
        $env:DELTAMIGRATE_RUNDIR = $open
        try {
            $command = if ($_ -eq 'Get-KvmVM') { { Get-KvmVM -ErrorAction Stop } } else { { Start-KvmVM -Name open-vm -Memory 64MB -Kernel $Guest -ErrorAction Stop } }
            $command | Should -Throw -ErrorId "RunDirectoryInsecure,DeltaMigrate.Module.Commands.$($_ -replace '-', '')Command"
            $command | Should -Throw -ExpectedMessage "*mode is 0777*set `$DELTAMIGRATE_RUNDIR to a folder you own with mode 0700*"
            Get-ChildItem $open | Should -BeNullOrEmpty -Because 'nothing is written into a folder that is refused'
        }
        finally {
            $env:DELTAMIGRATE_RUNDIR = $RunDir
            Remove-Item -Recurse -Force $open
        }
    }

    It 'Start-KvmVM keeps its serial log, pid file, record and sockets private (0600)' {
        $vm = Start-TestDestination -Name 'private-vm'
        try {
            foreach ($file in $vm.SerialLog, (Join-Path $RunDir 'private-vm.pid'), (Join-Path $RunDir 'private-vm.json'), (Join-Path $RunDir 'private-vm.qmp'), (Join-Path $RunDir 'private-vm.query.qmp')) {
                [IO.File]::GetUnixFileMode($file) | Should -Be ([IO.UnixFileMode]'UserRead, UserWrite') -Because "$file is for its owner only"
            }
            [IO.File]::GetUnixFileMode($RunDir) | Should -Be ([IO.UnixFileMode]'UserRead, UserWrite, UserExecute')
        }
        finally { Get-KvmVM 'private-vm' | Stop-KvmVM -Force -Confirm:$false }
    }

    It 'Start-KvmVM -WhatIf starts nothing' {
        Start-KvmVM -Name whatif-vm -Memory 64MB -Kernel $Guest -WhatIf
        Get-KvmVM -Name 'whatif-*' | Should -BeNullOrEmpty
        Test-Path (Join-Path $RunDir 'whatif-vm.json') | Should -BeFalse
    }
}
